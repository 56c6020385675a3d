//! People a memo names: a surname with a title ("张主任", "王总"), with a department before it
//! ("采购部刘经理", "设备科王科长"), familiar forms ("小陈", "老王"), and bare titles that point
//! at one person ("院长", "护士长"). Titles and departments map to role hints from the library.

use std::collections::BTreeMap;

use crate::library::Role;
use crate::result::Contact;

/// Common single-character surnames, and compound ones.
const SURNAMES: &str = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文庞樊兰殷施陶洪翟安颜倪严牛温芦季俞章鲁葛伍韦申尤毕聂焦向柳邢骆岳齐沿梅莫庄辛管祝左涂谷祁时舒耿牟卜路詹关苗凌费纪靳盛童欧甄项曲成游阳裴席卫查屈鲍位覃霍翁隋植甘景薄单包司柏宁柯阮桂闵解强丛华车冉房边辜吉饶刁瞿戚丘古米池滕晋苑邬臧畅宫来缪苟全褚廉简娄盖符奚木穆党燕郎邸冀谈姬屠连郜晏栾郁商蒙计喻揭窦迟宇敖糜鄢冷卓花仇艾蓝都巩稽井练仲乐虞卞封竺冼原官衣楚佟栗匡宗应台巫鞠僧桑荆谌银扬明沙薛伏岑习胥保和蔺";
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "令狐",
];

/// Titles that name one person even without a surname when they stand alone.
const BARE_TITLES: &[&str] = &[
    "院长",
    "副院长",
    "护士长",
    "店长",
    "厂长",
    "老板",
    "老板娘",
    "总经理",
    "董事长",
    "采购总监",
    "主任",
    "科长",
    "处长",
    "区域经理",
    "设备科长",
];

/// Words after a bare title that show it is not a person ("院长办公会", "主任医师").
const NOT_A_PERSON_AFTER: &[&str] = &["办公会", "办公室", "医师", "助理", "会议", "信箱", "级"];

pub fn find(
    text: &[char],
    roles: &BTreeMap<String, Role>,
    departments: &BTreeMap<String, Role>,
) -> Vec<Contact> {
    let mut titles: Vec<&str> = roles.keys().map(String::as_str).collect();
    titles.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
    let mut depts: Vec<&str> = departments.keys().map(String::as_str).collect();
    depts.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
    let at = |i: usize, w: &str| -> bool {
        w.chars()
            .enumerate()
            .all(|(k, c)| text.get(i + k) == Some(&c))
    };
    let surname_at = |i: usize| -> Option<usize> {
        if COMPOUND_SURNAMES.iter().any(|c| at(i, c)) {
            return Some(2);
        }
        text.get(i).filter(|c| SURNAMES.contains(**c)).map(|_| 1)
    };
    let mut out: Vec<Contact> = Vec::new();
    let mut covered = vec![false; text.len()];
    let mut i = 0;
    while i < text.len() {
        if covered[i] {
            i += 1;
            continue;
        }
        // [department] surname title
        let dept = depts.iter().find(|d| at(i, d)).copied();
        let j = i + dept.map(|d| d.chars().count()).unwrap_or(0);
        if let Some(sn) = surname_at(j) {
            if let Some(title) = titles.iter().find(|t| at(j + sn, t)).copied() {
                let end = j + sn + title.chars().count();
                let surname: String = text[j..j + sn].iter().collect();
                push(
                    &mut out,
                    &mut covered,
                    text,
                    i,
                    end,
                    Some(surname),
                    title,
                    dept,
                    roles,
                    departments,
                );
                i = end;
                continue;
            }
        }
        // 小陈 / 老王
        if (text[i] == '小' || text[i] == '老') && i + 1 < text.len() {
            if let Some(sn) = surname_at(i + 1) {
                let end = i + 1 + sn;
                // Not followed by another Han character that would make it a word (小王子, 老张家).
                let word_continues = text.get(end).is_some_and(|c| {
                    crate::zh::is_han(*c) && !"说讲提反讲也还就和跟那这的".contains(*c)
                });
                let prev_is_han = i > 0
                    && crate::zh::is_han(text[i - 1])
                    && !"跟和与找约让给问见叫听说请".contains(text[i - 1]);
                if !word_continues && !prev_is_han {
                    let surname: String = text[i + 1..end].iter().collect();
                    let title = if text[i] == '小' { "小" } else { "老" };
                    push(
                        &mut out,
                        &mut covered,
                        text,
                        i,
                        end,
                        Some(surname),
                        title,
                        None,
                        roles,
                        departments,
                    );
                    i = end;
                    continue;
                }
            }
        }
        // A bare title standing for one person.
        if let Some(title) = BARE_TITLES.iter().find(|t| at(i, t)).copied() {
            let end = i + title.chars().count();
            let after: String = text[end..].iter().take(4).collect();
            if !NOT_A_PERSON_AFTER.iter().any(|w| after.starts_with(w)) {
                push(
                    &mut out,
                    &mut covered,
                    text,
                    i,
                    end,
                    None,
                    title,
                    None,
                    roles,
                    departments,
                );
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn push(
    out: &mut Vec<Contact>,
    covered: &mut [bool],
    text: &[char],
    start: usize,
    end: usize,
    surname: Option<String>,
    title: &str,
    dept: Option<&str>,
    roles: &BTreeMap<String, Role>,
    departments: &BTreeMap<String, Role>,
) {
    let mention: String = text[start..end].iter().collect();
    covered[start..end].iter_mut().for_each(|c| *c = true);
    if out.iter().any(|c| c.mention == mention) {
        return;
    }
    let title_role = roles.get(title).copied();
    let dept_role = dept.and_then(|d| departments.get(d)).copied();
    let role = match (title_role, dept_role) {
        (Some(Role::Influencer), Some(d)) | (None, Some(d)) => Some(d),
        (t, _) => t,
    };
    out.push(Contact {
        mention,
        surname,
        title: title.to_string(),
        department: dept.map(String::from),
        role,
        start,
        end,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::Library;

    fn contacts(text: &str) -> Vec<(String, Option<Role>)> {
        let lib = Library::embedded().unwrap();
        let chars: Vec<char> = text.chars().collect();
        find(&chars, &lib.language.roles, &lib.language.departments)
            .into_iter()
            .map(|c| (c.mention, c.role))
            .collect()
    }

    #[test]
    fn titles_departments_and_familiar_forms() {
        assert_eq!(
            contacts("张主任说李护士长反映，采购部刘经理和赵店长都在"),
            vec![
                ("张主任".into(), Some(Role::DecisionMaker)),
                ("李护士长".into(), Some(Role::User)),
                ("采购部刘经理".into(), Some(Role::Purchaser)),
                ("赵店长".into(), Some(Role::DecisionMaker)),
            ]
        );
        assert_eq!(
            contacts("跟王总吃了饭，小陈说铺货率低"),
            vec![
                ("王总".into(), Some(Role::DecisionMaker)),
                ("小陈".into(), None)
            ]
        );
        assert_eq!(
            contacts("设备科王科长"),
            vec![("设备科王科长".into(), Some(Role::DecisionMaker))]
        );
    }

    #[test]
    fn bare_titles_but_not_institutions() {
        assert_eq!(
            contacts("今天见到了院长"),
            vec![("院长".into(), Some(Role::DecisionMaker))]
        );
        assert!(contacts("要上院长办公会").is_empty());
        assert!(contacts("客户说价格太高").is_empty());
    }
}
