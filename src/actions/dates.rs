//! Time expressions of next steps ("下周三", "3天内", "月底前", "节后") resolved to a date range
//! relative to when the memo was recorded. Weeks start on Monday, as in China; holidays come from
//! the library's `language.toml`.

use std::sync::OnceLock;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use regex::Regex;

use crate::library::Holiday;

/// A resolved time expression: the words, and the inclusive date range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub text: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

const NUM: &str = "[0-9零〇一二两三四五六七八九十百]+";

fn patterns() -> &'static Vec<(Regex, Kind)> {
    static P: OnceLock<Vec<(Regex, Kind)>> = OnceLock::new();
    P.get_or_init(|| {
        let r = |s: &str| Regex::new(s).expect("time expression pattern");
        vec![
            (r(&format!("({NUM})月({NUM})[日号](之前|以前|前)?")), Kind::MonthDay),
            (r("(下下|下|这|本)?(?:个)?(?:周|星期|礼拜)([一二三四五六日天1-7])(之前|以前|前)?"), Kind::Weekday),
            (r("(下下|下|这|本)(?:个)?(?:周|星期|礼拜)(之内|以内|内)?"), Kind::Week),
            (r(&format!("({NUM})个?工作日(之内|以内|内)")), Kind::WorkdaysWithin),
            (r(&format!("({NUM})(天|日|周|个星期|个礼拜|个月)(之内|以内|内)")), Kind::Within),
            (r(&format!("({NUM})(天|日|周|个星期|个礼拜)(之后|以后|后)")), Kind::After),
            (r("(下个?月|本月|这个?月)(初|中旬?|底|末)(之前|以前|前)?"), Kind::MonthPart),
            (r("()月(初|中旬?|底|末)(之前|以前|前)?"), Kind::MonthPart),
            (r("下个?月"), Kind::NextMonth),
            (r("(年底|年末)(之前|以前|前)?"), Kind::YearEnd),
            (r("(春节|过年|年|国庆|五一|中秋|端午|清明|元旦|节)(之后|以后|后|过后|前|之前|以前)"), Kind::Holiday),
            (r("过完年"), Kind::AfterNewYear),
            (r("大后天"), Kind::Offset(3)),
            (r("后天"), Kind::Offset(2)),
            (r("明天|明日|明早|明晚"), Kind::Offset(1)),
            (r("今天|今日|今晚|当天"), Kind::Offset(0)),
            (r("过两天|过几天|这两天|改天"), Kind::Soon),
            (r(&format!("({NUM})[日号](之前|以前|前)?")), Kind::DayOfMonth),
        ]
    })
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    MonthDay,
    Weekday,
    Week,
    WorkdaysWithin,
    Within,
    After,
    MonthPart,
    NextMonth,
    YearEnd,
    Holiday,
    AfterNewYear,
    Offset(i64),
    Soon,
    DayOfMonth,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "一" | "1" => Weekday::Mon,
        "二" | "2" => Weekday::Tue,
        "三" | "3" => Weekday::Wed,
        "四" | "4" => Weekday::Thu,
        "五" | "5" => Weekday::Fri,
        "六" | "6" => Weekday::Sat,
        "日" | "天" | "7" => Weekday::Sun,
        _ => return None,
    })
}

/// The furthest ahead a next step may lie. A number that puts a date further out ("999999999天内")
/// is not a plan anyone will act on: the phrase is left without a date rather than resolved.
const HORIZON_DAYS: u64 = 2 * 366;

/// `d` moved by `n` days, or None past the calendar's range.
fn add_days(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    d.checked_add_signed(Duration::try_days(n)?)
}

fn monday(d: NaiveDate) -> Option<NaiveDate> {
    add_days(d, -(d.weekday().num_days_from_monday() as i64))
}

fn month_end(year: i32, month: u32) -> Option<NaiveDate> {
    let (y, m) = if month == 12 {
        (year.checked_add(1)?, 1)
    } else {
        (year, month + 1)
    };
    add_days(NaiveDate::from_ymd_opt(y, m, 1)?, -1)
}

fn add_months(d: NaiveDate, n: u32) -> Option<NaiveDate> {
    let total = d
        .year()
        .checked_mul(12)?
        .checked_add(d.month0() as i32)?
        .checked_add(i32::try_from(n).ok()?)?;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    let last = month_end(y, m)?.day();
    NaiveDate::from_ymd_opt(y, m, d.day().min(last))
}

/// The first time expression in `text`, resolved against `today`.
pub fn resolve(text: &str, today: NaiveDate, holidays: &[Holiday]) -> Option<Due> {
    let mut best: Option<(usize, Due)> = None;
    for (re, kind) in patterns() {
        for caps in re.captures_iter(text) {
            let m = caps.get(0).unwrap();
            if m.as_str() == "年" || m.as_str().is_empty() {
                continue;
            }
            // "十年前", "几年后", "去年前" are spans of time, not the New Year holiday.
            if matches!(kind, Kind::Holiday) && caps.get(1).is_some_and(|g| g.as_str() == "年") {
                let prev = text[..m.start()].chars().last();
                if prev.is_some_and(|c| {
                    c.is_ascii_digit()
                        || crate::zh::numeral_digit(c).is_some()
                        || "十百几多半去今明前后".contains(c)
                }) {
                    continue;
                }
            }
            if let Some((from, to)) = interpret(*kind, &caps, today, holidays) {
                let due = Due {
                    text: m.as_str().to_string(),
                    from,
                    to: to.max(from),
                };
                // Earliest in the text wins; at the same place, the longer expression.
                let better = match &best {
                    None => true,
                    Some((start, b)) => {
                        m.start() < *start || (m.start() == *start && due.text.len() > b.text.len())
                    }
                };
                if better {
                    best = Some((m.start(), due));
                }
                break;
            }
        }
    }
    best.map(|(_, d)| d)
}

fn interpret(
    kind: Kind,
    caps: &regex::Captures,
    today: NaiveDate,
    holidays: &[Holiday],
) -> Option<(NaiveDate, NaiveDate)> {
    let g = |i: usize| caps.get(i).map(|m| m.as_str()).unwrap_or("");
    // Every number is range-checked before it is used: a count larger than `max` is not a
    // date anyone plans by, and it must not overflow the calendar arithmetic.
    let num = |i: usize, max: u64| {
        crate::zh::parse_number(g(i))
            .filter(|&n| n <= max)
            .map(|n| n as i64)
    };
    let before = |s: &str| matches!(s, "之前" | "以前" | "前");
    let within = |s: &str| matches!(s, "之内" | "以内" | "内");
    let day = |d: NaiveDate, n: i64| add_days(d, n);
    Some(match kind {
        Kind::MonthDay => {
            let (m, d) = (num(1, 12)? as u32, num(2, 31)? as u32);
            let mut date = NaiveDate::from_ymd_opt(today.year(), m, d)?;
            if date < day(today, -60)? {
                date = NaiveDate::from_ymd_opt(today.year().checked_add(1)?, m, d)?;
            }
            if before(g(3)) {
                (today, day(date, -1)?)
            } else {
                (date, date)
            }
        }
        Kind::Weekday => {
            let wd = weekday(g(2))?;
            let weeks = match g(1) {
                "下" => 1,
                "下下" => 2,
                _ => 0,
            };
            let mut date = day(monday(today)?, 7 * weeks + wd.num_days_from_monday() as i64)?;
            if g(1).is_empty() && date < today {
                // A bare "周三" already past this week means next week's.
                date = day(date, 7)?;
            }
            if before(g(3)) {
                (today.min(date), date)
            } else {
                (date, date)
            }
        }
        Kind::Week => {
            let weeks = match g(1) {
                "下" => 1,
                "下下" => 2,
                _ => 0,
            };
            let start = day(monday(today)?, 7 * weeks)?;
            let end = day(start, 6)?;
            if weeks == 0 || within(g(2)) {
                (today, end)
            } else {
                (start, end)
            }
        }
        Kind::WorkdaysWithin => {
            // Five workdays a week: the horizon in workdays.
            let mut n = num(1, HORIZON_DAYS * 5 / 7)?;
            let mut d = today;
            while n > 0 {
                d = day(d, 1)?;
                if d.weekday().num_days_from_monday() < 5 {
                    n -= 1;
                }
            }
            (today, d)
        }
        Kind::Within | Kind::After => {
            let end = match g(2) {
                "天" | "日" => day(today, num(1, HORIZON_DAYS)?)?,
                "周" | "个星期" | "个礼拜" => day(today, 7 * num(1, HORIZON_DAYS / 7)?)?,
                "个月" => add_months(today, num(1, HORIZON_DAYS / 30)? as u32)?,
                _ => return None,
            };
            if matches!(kind, Kind::Within) {
                (today, end)
            } else {
                (end, end)
            }
        }
        Kind::MonthPart => {
            let which = g(1);
            let part = g(2);
            let base = if which.starts_with('下') {
                add_months(today.with_day(1)?, 1)?
            } else {
                today.with_day(1)?
            };
            let (y, m) = (base.year(), base.month());
            let end = month_end(y, m)?;
            let (mut from, mut to) = match part {
                "初" => (base, NaiveDate::from_ymd_opt(y, m, 10)?),
                "中" | "中旬" => (
                    NaiveDate::from_ymd_opt(y, m, 11)?,
                    NaiveDate::from_ymd_opt(y, m, 20)?,
                ),
                _ => (day(end, -4)?, end),
            };
            if which.is_empty() && to < today {
                // "月初" said after the 10th means next month's.
                let next = add_months(base, 1)?;
                let e = month_end(next.year(), next.month())?;
                (from, to) = match part {
                    "初" => (
                        next,
                        NaiveDate::from_ymd_opt(next.year(), next.month(), 10)?,
                    ),
                    "中" | "中旬" => (
                        NaiveDate::from_ymd_opt(next.year(), next.month(), 11)?,
                        NaiveDate::from_ymd_opt(next.year(), next.month(), 20)?,
                    ),
                    _ => (day(e, -4)?, e),
                };
            }
            if before(g(3)) {
                (today, to)
            } else {
                (from.max(today), to)
            }
        }
        Kind::NextMonth => {
            let first = add_months(today.with_day(1)?, 1)?;
            (first, month_end(first.year(), first.month())?)
        }
        Kind::YearEnd => {
            let end = NaiveDate::from_ymd_opt(today.year(), 12, 31)?;
            if before(g(2)) {
                (today, end)
            } else {
                (
                    NaiveDate::from_ymd_opt(today.year(), 12, 1)?.max(today),
                    end,
                )
            }
        }
        Kind::Holiday => {
            let name = match g(1) {
                "过年" | "年" => "春节",
                "节" => "",
                n => n,
            };
            let h = holidays
                .iter()
                .find(|h| h.last >= today && (name.is_empty() || h.name == name))?;
            if before(g(2)) {
                (today, day(h.first, -1)?)
            } else {
                let start = day(h.last, 1)?;
                (start, day(start, 6)?)
            }
        }
        Kind::AfterNewYear => {
            let h = holidays
                .iter()
                .find(|h| h.last >= today && h.name == "春节")?;
            let start = day(h.last, 1)?;
            (start, day(start, 6)?)
        }
        Kind::Offset(n) => (day(today, n)?, day(today, n)?),
        Kind::Soon => (day(today, 1)?, day(today, 4)?),
        Kind::DayOfMonth => {
            let d = num(1, 31)? as u32;
            let mut date = today.with_day(d)?;
            if date < today {
                let next = add_months(today.with_day(1)?, 1)?;
                date = next.with_day(d)?;
            }
            if before(g(2)) {
                (today, day(date, -1)?)
            } else {
                (date, date)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn holidays() -> Vec<Holiday> {
        vec![
            Holiday {
                name: "春节".into(),
                first: d("2026-02-15"),
                last: d("2026-02-23"),
            },
            Holiday {
                name: "国庆".into(),
                first: d("2026-10-01"),
                last: d("2026-10-07"),
            },
            Holiday {
                name: "元旦".into(),
                first: d("2027-01-01"),
                last: d("2027-01-03"),
            },
        ]
    }

    fn due(text: &str, today: &str) -> (String, String, String) {
        let r = resolve(text, d(today), &holidays()).unwrap_or_else(|| panic!("no date in {text}"));
        (r.text, r.from.to_string(), r.to.to_string())
    }

    fn range(text: &str, today: &str) -> (String, String) {
        let (_, a, b) = due(text, today);
        (a, b)
    }

    #[test]
    fn weekdays_relative_to_a_monday_start() {
        // 2026-03-04 is a Wednesday.
        assert_eq!(
            due("希望我们下周三带方案过来", "2026-03-04"),
            ("下周三".into(), "2026-03-11".into(), "2026-03-11".into())
        );
        assert_eq!(
            range("这周五前给报价", "2026-03-04"),
            ("2026-03-04".into(), "2026-03-06".into())
        );
        assert_eq!(
            range("周一再去一趟", "2026-03-04"),
            ("2026-03-09".into(), "2026-03-09".into())
        );
        // Recorded on a Sunday: next week starts tomorrow.
        assert_eq!(
            range("下周三见", "2026-03-08"),
            ("2026-03-11".into(), "2026-03-11".into())
        );
        assert_eq!(
            range("下周", "2026-03-08"),
            ("2026-03-09".into(), "2026-03-15".into())
        );
        // Recorded on a Monday.
        assert_eq!(
            range("这周内搞定", "2026-03-09"),
            ("2026-03-09".into(), "2026-03-15".into())
        );
        assert_eq!(
            range("下下周二", "2026-03-09"),
            ("2026-03-24".into(), "2026-03-24".into())
        );
    }

    #[test]
    fn week_that_crosses_the_year() {
        assert_eq!(
            range("下周安排培训", "2026-12-30"),
            ("2027-01-04".into(), "2027-01-10".into())
        );
        assert_eq!(
            range("下周五", "2026-12-30"),
            ("2027-01-08".into(), "2027-01-08".into())
        );
    }

    #[test]
    fn days_and_workdays() {
        assert_eq!(
            range("要求3天内派工程师", "2026-01-30"),
            ("2026-01-30".into(), "2026-02-02".into())
        );
        assert_eq!(
            range("三天内", "2026-01-30"),
            ("2026-01-30".into(), "2026-02-02".into())
        );
        assert_eq!(
            range("两个工作日内回复", "2026-03-06"),
            ("2026-03-06".into(), "2026-03-10".into())
        );
        assert_eq!(
            range("明天", "2026-02-28"),
            ("2026-03-01".into(), "2026-03-01".into())
        );
        assert_eq!(
            range("后天", "2026-12-31"),
            ("2027-01-02".into(), "2027-01-02".into())
        );
        assert_eq!(
            range("一周内", "2026-03-04"),
            ("2026-03-04".into(), "2026-03-11".into())
        );
    }

    #[test]
    fn month_boundaries() {
        assert_eq!(
            range("月底前把合同签了", "2026-01-31"),
            ("2026-01-31".into(), "2026-01-31".into())
        );
        assert_eq!(
            range("月底前", "2026-02-10"),
            ("2026-02-10".into(), "2026-02-28".into())
        );
        assert_eq!(
            range("下个月初", "2026-01-31"),
            ("2026-02-01".into(), "2026-02-10".into())
        );
        assert_eq!(
            range("下个月初", "2026-12-15"),
            ("2027-01-01".into(), "2027-01-10".into())
        );
        assert_eq!(
            range("下个月", "2026-12-15"),
            ("2027-01-01".into(), "2027-01-31".into())
        );
        assert_eq!(
            range("月初", "2026-03-20"),
            ("2026-04-01".into(), "2026-04-10".into())
        );
        assert_eq!(
            range("下月底", "2026-01-15"),
            ("2026-02-24".into(), "2026-02-28".into())
        );
        assert_eq!(
            range("3月5号前", "2026-03-01"),
            ("2026-03-01".into(), "2026-03-04".into())
        );
        assert_eq!(
            range("15号", "2026-03-20"),
            ("2026-04-15".into(), "2026-04-15".into())
        );
        assert_eq!(
            range("一个月内", "2026-01-31"),
            ("2026-01-31".into(), "2026-02-28".into())
        );
    }

    #[test]
    fn holidays_from_the_calendar() {
        assert_eq!(
            range("节后再说", "2026-09-28"),
            ("2026-10-08".into(), "2026-10-14".into())
        );
        assert_eq!(
            range("国庆后", "2026-09-28"),
            ("2026-10-08".into(), "2026-10-14".into())
        );
        assert_eq!(
            range("年后", "2026-01-20"),
            ("2026-02-24".into(), "2026-03-02".into())
        );
        assert_eq!(
            range("春节前", "2026-01-20"),
            ("2026-01-20".into(), "2026-02-14".into())
        );
        assert_eq!(
            range("年底前", "2026-11-03"),
            ("2026-11-03".into(), "2026-12-31".into())
        );
    }

    #[test]
    fn numbers_beyond_the_horizon_give_no_date_and_never_panic() {
        for text in [
            "999999999天内派工程师",
            "9999999999999999999天内",
            "99999999999999999999天后",
            "4294967297个月内",
            "2147483648个月内",
            "999999999周内",
            "99999个工作日内回复",
            "1000000000000个星期以后",
            "4294967297月4294967297日",
            "3月4294967301日前",
            "4294967297号前",
            "九千九百九十九万天内",
        ] {
            for today in ["2026-03-04", "9999-12-31", "0001-01-01"] {
                let due = resolve(text, d(today), &holidays());
                assert!(due.is_none(), "{text} at {today}: {due:?}");
            }
        }
        // Within the horizon a count still resolves.
        assert_eq!(
            range("700天内", "2026-03-04"),
            ("2026-03-04".into(), "2028-02-02".into())
        );
        assert_eq!(
            range("24个月内", "2026-03-04"),
            ("2026-03-04".into(), "2028-03-04".into())
        );
    }

    #[test]
    fn dates_at_the_ends_of_the_calendar_never_panic() {
        let phrases = [
            "3月5号前",
            "下周三",
            "下下周",
            "两个工作日内",
            "3天内",
            "3周后",
            "一个月内",
            "下个月底",
            "月初",
            "下个月",
            "年底前",
            "节后",
            "过完年",
            "大后天",
            "改天",
            "15号前",
        ];
        for text in phrases {
            for today in [
                NaiveDate::MIN,
                NaiveDate::MAX,
                d("9999-12-31"),
                d("0000-01-01"),
            ] {
                let _ = resolve(text, today, &holidays());
            }
        }
    }

    proptest::proptest! {
        /// Any number in any phrase, on any day: a date within the horizon or none, never a panic.
        #[test]
        fn any_number_in_any_phrase(n in proptest::num::u64::ANY, small in 0u64..5000,
                                    phrase in 0usize..9, days in -800_000i32..800_000) {
            let today = NaiveDate::from_num_days_from_ce_opt(days).unwrap_or(NaiveDate::MIN);
            let unit = ["天内", "天后", "周内", "个月内", "个工作日内", "月1日", "号前", "个星期以后", "日以内"][phrase];
            for v in [n, small] {
                if let Some(due) = resolve(&format!("{v}{unit}"), today, &holidays()) {
                    proptest::prop_assert!(due.from <= due.to);
                    proptest::prop_assert!((due.to - today).num_days() <= HORIZON_DAYS as i64 + 31);
                }
            }
        }
    }

    #[test]
    fn no_time_no_date() {
        assert!(resolve("客户说价格太高", d("2026-03-04"), &holidays()).is_none());
        assert!(resolve("年度合同", d("2026-03-04"), &holidays()).is_none());
        assert!(resolve("四轮定位仪是十年前的了", d("2026-03-04"), &holidays()).is_none());
    }
}
