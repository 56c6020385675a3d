use super::*;
use crate::library::Library;

fn cues() -> Cues {
    Cues::new(&Library::embedded().unwrap().language).unwrap()
}

fn clauses(text: &str) -> Vec<String> {
    let a = analyze(text, &cues());
    a.clauses
        .iter()
        .map(|c| a.original_slice(c.range.clone()))
        .collect()
}

#[test]
fn normalisation_is_one_for_one() {
    let text = "庫存還夠，ＰＣＡ泵３台";
    let n: String = normalize(text).into_iter().collect();
    assert_eq!(n, "库存还够，pca泵3台");
    assert_eq!(n.chars().count(), text.chars().count());
}

#[test]
fn clauses_split_at_punctuation_spaces_and_discourse_markers() {
    assert_eq!(clauses("库存还够，价格太高。"), ["库存还够", "价格太高"]);
    assert_eq!(clauses("库存还够 价格太高"), ["库存还够", "价格太高"]);
    assert_eq!(
        clauses("库存还够但是价格太高另外想要培训"),
        ["库存还够", "但是价格太高", "另外想要培训"]
    );
    assert_eq!(clauses("，，  "), Vec::<String>::new());
}

fn negation(clause: &str, term: &str, next: Option<&str>) -> Option<Negation> {
    let start = clause
        .find(term)
        .map(|b| clause[..b].chars().count())
        .unwrap();
    let range = start..start + term.chars().count();
    let following: Vec<&str> = next.into_iter().collect();
    cues().need_negation(clause, &range, std::slice::from_ref(&range), &following)
}

#[test]
fn negation_before_and_after_the_need() {
    assert_eq!(
        negation("暂时不需要培训", "培训", None).unwrap().kind,
        "before"
    );
    assert!(negation("没有投诉", "投诉", None).is_some());
    assert_eq!(
        negation("客户说库存还够", "库存", None).unwrap().cue,
        "还够"
    );
    assert!(negation("上次的漏液问题已经解决了", "漏液", None).is_some());
    assert_eq!(
        negation("培训的事", "培训", Some("暂时不需要"))
            .unwrap()
            .kind,
        "next_clause"
    );
    assert_eq!(
        negation(
            "上次的手套破损",
            "破损",
            Some("换了货以后护士长说没再出现了")
        )
        .unwrap()
        .kind,
        "resolved_later"
    );
    assert_eq!(
        negation("客户说不缺货", "缺货", None).unwrap().kind,
        "before"
    );
}

#[test]
fn problems_stated_with_negative_words_are_not_negations() {
    assert!(negation("疼痛管理不到位", "疼痛管理", None).is_none());
    assert!(negation("镇痛效果不好", "镇痛", None).is_none());
    assert!(negation("问他们要不要培训", "培训", None).is_none());
    assert!(negation("不是不需要培训", "培训", None).is_none());
    assert!(negation("希望我们安排培训", "培训", Some("下周来")).is_none());
}

fn modality(clause: &str, action: &str) -> Modality {
    let start = clause
        .find(action)
        .map(|b| clause[..b].chars().count())
        .unwrap();
    cues().action_modality(clause, &(start..start + action.chars().count()), false)
}

#[test]
fn actions_done_planned_or_negated() {
    assert_eq!(modality("今天见到了院长", "见到了院长"), Modality::Done);
    assert!(matches!(
        modality("下周争取见院长", "见院长"),
        Modality::Planned { .. }
    ));
    assert!(matches!(
        modality("准备去拿审批单", "审批单"),
        Modality::Planned { .. }
    ));
    assert!(matches!(
        modality("院长这次没见到", "院长这次没见到"),
        Modality::Negated { .. }
    ));
    assert!(matches!(
        modality("报价还没发", "报价还没发"),
        Modality::Negated { .. }
    ));
    assert_eq!(
        modality("已经约好了下周三见院长", "约好了下周三见院长"),
        Modality::Done
    );
    assert!(matches!(
        modality("审批还卡在总经理那没批", "审批"),
        Modality::Negated { .. }
    ));
    assert!(matches!(
        modality("主任让我下周把下季度的单子报个价过去", "报个价"),
        Modality::Planned { .. }
    ));
    assert!(matches!(
        modality(
            "这次好多了已经没啥问题了主任让我下周把单子报个价过去",
            "报个价"
        ),
        Modality::Planned { .. }
    ));
    assert_eq!(modality("报价单发了", "报价单"), Modality::Done);
}

#[test]
fn expectations_that_did_not_come_true() {
    let c = cues();
    assert!(c
        .disappointed(
            "本来约好今天见分管院长谈监护仪的事",
            &["结果人临时去市里开会了", "没见到"]
        )
        .is_some());
    assert!(c.disappointed("今天见了院长", &["没什么问题"]).is_none());
    assert!(c
        .disappointed("原定今天下午的科室会因为他临时被叫去院办没开成", &[])
        .is_some());
}

#[test]
fn library_words_stay_whole() {
    let seg = Segmenter::new(["镇痛方案对比表", "铺货率"]);
    let words = seg.words("希望我们带镇痛方案对比表过来，铺货率只有六成");
    assert!(words.contains(&"镇痛方案对比表"), "{words:?}");
    assert!(words.contains(&"铺货率"), "{words:?}");
    let tokens = seg.tokens("铺货率只有六成");
    assert_eq!(tokens[0].range, 0..3);
    assert!(tokens.iter().all(|t| t.text != "的"));
}
