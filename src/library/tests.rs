use super::*;

fn default_files() -> Vec<(String, String)> {
    EMBEDDED_LIBRARY
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect()
}

fn with_file(mut files: Vec<(String, String)>, name: &str, content: &str) -> Vec<(String, String)> {
    files.retain(|(p, _)| p != name);
    files.push((name.to_string(), content.to_string()));
    files
}

fn problems(files: Vec<(String, String)>) -> Vec<LibraryProblem> {
    match Library::from_files(files, "test") {
        Err(Error::Library(p)) => p.0,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("library should be invalid"),
    }
}

const TAXONOMY_NEEDS: &[&str] = &[
    "pain_management",
    "clinical_usage_issue",
    "staff_training",
    "stock_shortage",
    "tender_support",
    "academic_support",
    "patient_education",
    "trial_request",
    "product_documentation",
    "equipment_maintenance",
    "promotion_support",
    "display_fee",
    "near_expiry_stock",
    "distribution_coverage",
    "payment_terms",
    "price_concern",
    "competitor_threat",
    "delivery_logistics",
    "ev_repair_capability",
    "parts_availability",
    "tco_value_proof",
    "equipment_upgrade",
    "checkout_queue",
    "member_repurchase",
    "maternal_infant",
    "store_traffic",
    "quality_complaint",
    "contract_renewal",
];
const TAXONOMY_ACTIONS: &[(&str, Tier)] = &[
    ("decision_maker_meeting", Tier::High),
    ("procurement_process_obtained", Tier::High),
    ("purchase_approval_obtained", Tier::High),
    ("trial_confirmed", Tier::High),
    ("dept_meeting_held", Tier::High),
    ("quote_submitted", Tier::High),
    ("order_signed", Tier::High),
    ("new_contact_obtained", Tier::High),
    ("materials_delivered", Tier::Standard),
    ("issue_resolved", Tier::Standard),
    ("routine_visit", Tier::Standard),
    ("vague_followup", Tier::Low),
];

#[test]
fn default_library_is_valid_and_keeps_the_crm_contract() {
    let lib = Library::embedded().unwrap_or_else(|e| panic!("{e}"));
    for id in TAXONOMY_NEEDS {
        assert!(lib.need(id).is_some(), "need {id} missing");
    }
    for (id, tier) in TAXONOMY_ACTIONS {
        let a = lib
            .actions
            .iter()
            .find(|a| a.id == *id)
            .unwrap_or_else(|| panic!("action {id} missing"));
        assert_eq!(a.tier, *tier, "{id}");
    }
    for title in [
        "镇痛方案对比表",
        "患者教育视频",
        "药企学术支持申请",
        "临床问题应答手册",
        "替代型号清单",
        "紧急配送通道",
        "碳陶刹车片TCO测算表",
    ] {
        assert!(
            lib.packs.iter().any(|p| p.title == title),
            "pack {title} missing"
        );
    }
    assert!(lib.version.starts_with("lib-"));
    assert_eq!(lib.source, "embedded");
}

#[test]
fn directory_and_embedded_copies_have_the_same_version() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("need-library");
    let on_disk = Library::load(&dir).unwrap();
    assert_eq!(on_disk.version, Library::embedded().unwrap().version);
    let changed = with_file(default_files(), "library.toml", "name = \"x\"\n");
    assert_ne!(
        Library::from_files(changed, "t").unwrap().version,
        on_disk.version
    );
}

#[test]
fn problems_carry_file_line_and_field() {
    let needs = r#"
[[need]]
id = "pain_management"
name = "重复"
domain = "medical_devices"
keywords = ["全新词一"]
examples = ["例句"]
packs = ["analgesia_comparison"]

[[need]]
id = "brand_new"
name = "新需求"
domain = "moon_base"
keywords = ["镇痛方案", "全新词二"]
examples = ["例句"]
packs = ["no_such_pack"]
threshold = 1.5

[[need]]
id = "empty_one"
name = "空"
domain = "general"
packs = ["analgesia_comparison"]
"#;
    let p = problems(with_file(default_files(), "needs/zz_extra.toml", needs));
    let find = |needle: &str| {
        p.iter()
            .find(|x| x.message.contains(needle))
            .unwrap_or_else(|| panic!("no problem mentioning {needle:?} in {p:#?}"))
    };
    let dup = find("duplicate id \"pain_management\"");
    assert_eq!(
        (dup.file.as_str(), dup.line),
        ("needs/zz_extra.toml", Some(3))
    );
    assert!(
        dup.message.contains("needs/medical_devices.toml"),
        "{}",
        dup.message
    );
    assert_eq!(find("moon_base").line, Some(13));
    let claimed = find("already claimed by need pain_management");
    assert_eq!(claimed.line, Some(14));
    assert_eq!(claimed.field.as_deref(), Some("need.brand_new.keywords"));
    assert_eq!(find("unknown solution pack").line, Some(16));
    assert_eq!(find("must lie in (0, 1)").line, Some(17));
    assert!(find("at least one keyword").field.as_deref() == Some("need.empty_one.keywords"));
    find("at least one example");
}

#[test]
fn ids_must_be_lower_snake_case_in_every_kind_of_entry() {
    let needs = "[[need]]\nid = \"Pain-Mgmt\"\nname = \"x\"\ndomain = \"general\"\nkeywords = [\"全新词三\"]\nexamples = [\"例句\"]\npacks = [\"analgesia_comparison\"]\n";
    let packs = "[[pack]]\nid = \"9pack\"\ntitle = \"x\"\nkind = \"checklist\"\nlink = \"x\"\ndescription = \"x\"\n";
    let files = with_file(default_files(), "needs/zz.toml", needs);
    let p = problems(with_file(files, "packs/zz.toml", packs));
    let bad: Vec<_> = p
        .iter()
        .filter(|x| x.message.contains("is not lower snake case"))
        .map(|x| (x.file.as_str(), x.line, x.field.as_deref()))
        .collect();
    assert!(
        bad.contains(&("needs/zz.toml", Some(2), Some("need.Pain-Mgmt.id"))),
        "{p:#?}"
    );
    assert!(
        bad.contains(&("packs/zz.toml", Some(2), Some("pack.9pack"))),
        "{p:#?}"
    );
}

#[test]
fn syntax_errors_and_bad_patterns_are_located() {
    let p = problems(with_file(
        default_files(),
        "packs/zz.toml",
        "[[pack]]\nid = \"x\"\ntitle = \n",
    ));
    assert_eq!(p[0].file, "packs/zz.toml");
    assert_eq!(p[0].line, Some(3));

    let actions = EMBEDDED_LIBRARY
        .iter()
        .find(|(f, _)| *f == "actions.toml")
        .unwrap()
        .1;
    let broken = actions.replacen("patterns = [", "patterns = ['(unclosed',", 1);
    let p = problems(with_file(default_files(), "actions.toml", &broken));
    assert!(
        p.iter()
            .any(|x| x.message.contains("invalid regular expression") && x.line.is_some()),
        "{p:#?}"
    );
}

#[test]
fn missing_files_and_strangers_are_reported() {
    let mut files = default_files();
    files.retain(|(p, _)| p != "language.toml");
    files.push(("notes.toml".into(), "x = 1".into()));
    let p = problems(files);
    assert!(p
        .iter()
        .any(|x| x.file == "language.toml" && x.message.contains("missing")));
    assert!(p.iter().any(|x| x.file == "notes.toml"));
}

#[test]
fn prompt_words_start_with_need_names() {
    let lib = Library::embedded().unwrap();
    let words = lib.prompt_words(None);
    assert_eq!(words[0], lib.needs[0].name);
    let unique: std::collections::HashSet<_> = words.iter().collect();
    assert_eq!(unique.len(), words.len());
}

#[test]
fn a_domain_prompt_holds_that_domain_then_the_general_needs() {
    let lib = Library::embedded().unwrap();
    let words = lib.prompt_words(Some("medical_devices"));
    let domain_of = |name: &str| {
        lib.needs
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.domain.as_str())
    };
    let names: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .take_while(|w| domain_of(w).is_some())
        .collect();
    let medical = lib
        .needs
        .iter()
        .filter(|n| n.domain == "medical_devices")
        .count();
    let general = lib.needs.iter().filter(|n| n.domain == GENERAL).count();
    assert!(medical > 0 && general > 0);
    assert_eq!(names.len(), medical + general, "{names:?}");
    assert!(names[..medical]
        .iter()
        .all(|n| domain_of(n) == Some("medical_devices")));
    assert!(names[medical..]
        .iter()
        .all(|n| domain_of(n) == Some(GENERAL)));
    // No other domain's need names, keywords or pack titles stand in for them.
    let fmcg = lib
        .needs
        .iter()
        .find(|n| n.domain == "fmcg_distribution")
        .unwrap();
    assert!(!words.contains(&fmcg.name));
    assert!(!fmcg.keywords.iter().any(|k| words.contains(k)
        && !lib
            .needs
            .iter()
            .any(|n| n.domain != "fmcg_distribution" && n.keywords.contains(k))));
}

#[test]
fn unknown_domains_are_named_with_the_known_ones() {
    assert!(check_domain("pharmacy").is_ok());
    let e = check_domain("pharma").unwrap_err();
    assert_eq!(e.code(), "invalid_input");
    assert!(e.to_string().contains("medical_devices"), "{e}");
    let long = "x".repeat(100_000);
    let e = check_domain(&long).unwrap_err().to_string();
    assert!(e.len() < 300 && e.contains('…'), "{e}");
}

#[test]
fn urgent_needs_are_marked_in_the_library_and_checked() {
    let lib = Library::from_files(default_files(), "test").unwrap();
    let urgent: Vec<&str> = lib
        .needs
        .iter()
        .filter(|n| n.urgent)
        .map(|n| n.id.as_str())
        .collect();
    assert!(urgent.contains(&"stock_shortage") && urgent.contains(&"equipment_maintenance"));
    assert!(!lib.need("price_concern").unwrap().urgent);
    // Not a boolean: a problem with its file and line, like any other.
    let files = default_files();
    let (name, text) = files
        .iter()
        .find(|(p, _)| p == "needs/fmcg_distribution.toml")
        .unwrap()
        .clone();
    let broken = text.replacen("urgent = true", "urgent = \"yes\"", 1);
    let line = broken
        .lines()
        .position(|l| l.starts_with("urgent = "))
        .unwrap()
        + 1;
    let p = problems(with_file(files, &name, &broken));
    assert!(
        p.iter()
            .any(|p| p.file == name && p.line == Some(line) && p.message.contains("boolean")),
        "{p:?}"
    );
}
