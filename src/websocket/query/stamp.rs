//! TIME and DATE stamps, checked as Go's `time.Parse` checks them in the layouts the
//! node uses (RFC 3339, and `2006-01-02`).

enum Fail {
    Bad,
    Range(&'static str),
}

#[derive(Default)]
struct Date {
    year: u32,
    month: u32,
    day: u32,
}

/// The year of a stamp Go's `time.Parse` would take in the given layout, or its words
/// refusing it: walks the layout as Go does, a known element or else one literal byte.
/// The value holds only ASCII (the scanner's stamp characters).
pub(super) fn check_stamp(layout: &str, value: &str) -> Result<u32, String> {
    const ELEMENTS: [&str; 7] = ["2006", "01", "02", "15", "04", "05", "Z07:00"];
    let (mut rest, mut left) = (value, layout);
    let mut date = Date::default();
    while !left.is_empty() {
        let elem = ELEMENTS.into_iter().find(|e| left.starts_with(e));
        let elem = elem.unwrap_or(&left[..1]);
        left = &left[elem.len()..];
        let hold = rest;
        take(elem, &mut rest, &mut date).map_err(|fail| match fail {
            Fail::Bad => format!(
                "parsing time \"{value}\" as \"{layout}\": cannot parse \"{hold}\" as \"{elem}\""
            ),
            Fail::Range(what) => format!("parsing time \"{value}\": {what} out of range"),
        })?;
    }
    if !rest.is_empty() {
        return Err(format!("parsing time \"{value}\": extra text: \"{rest}\""));
    }
    let leap = date.year % 4 == 0 && (date.year % 100 != 0 || date.year % 400 == 0);
    let days = match date.month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if date.day < 1 || date.day > days {
        return Err(format!("parsing time \"{value}\": day out of range"));
    }
    Ok(date.year)
}

fn take(elem: &str, rest: &mut &str, date: &mut Date) -> Result<(), Fail> {
    let range = |bad: bool, what| if bad { Err(Fail::Range(what)) } else { Ok(()) };
    match elem {
        "2006" => {
            let digits = rest
                .get(..4)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
            date.year = digits.and_then(|d| d.parse().ok()).ok_or(Fail::Bad)?;
            *rest = &rest[4..];
        }
        "01" => {
            date.month = take_number(rest, true)?;
            return range(!(1..=12).contains(&date.month), "month");
        }
        // Checked against the month once all is read, as Go does.
        "02" => date.day = take_number(rest, true)?,
        // Go's "15" takes one digit or two.
        "15" => return range(take_number(rest, false)? >= 24, "hour"),
        "04" => return range(take_number(rest, true)? >= 60, "minute"),
        "05" => return range(take_number(rest, true)? >= 60, "second"),
        "Z07:00" => return take_zone(rest),
        literal => *rest = rest.strip_prefix(literal).ok_or(Fail::Bad)?,
    }
    Ok(())
}

/// Two digits, or with `!fixed` one if no second follows.
fn take_number(rest: &mut &str, fixed: bool) -> Result<u32, Fail> {
    let digits = rest.bytes().take(2).take_while(u8::is_ascii_digit).count();
    if digits == 0 || (fixed && digits < 2) {
        return Err(Fail::Bad);
    }
    let number = rest[..digits].parse().map_err(|_| Fail::Bad)?;
    *rest = &rest[digits..];
    Ok(number)
}

/// `Z` or `±hh:mm`. Go lets offsets reach 24 hours or 60 minutes, and reports one out of
/// range (minutes over hours) before a bad sign.
fn take_zone(rest: &mut &str) -> Result<(), Fail> {
    if let Some(after) = rest.strip_prefix('Z') {
        *rest = after;
        return Ok(());
    }
    let zone = rest.get(..6).filter(|z| z.as_bytes()[3] == b':');
    let zone = zone.ok_or(Fail::Bad)?;
    *rest = &rest[6..];
    let hours = take_number(&mut &zone[1..3], true);
    let minutes = hours
        .as_ref()
        .ok()
        .map(|_| take_number(&mut &zone[4..6], true));
    match (hours, minutes, zone.as_bytes()[0]) {
        (_, Some(Ok(m)), _) if m > 60 => Err(Fail::Range("time zone offset minute")),
        (Ok(h), _, _) if h > 24 => Err(Fail::Range("time zone offset hour")),
        (Ok(_), Some(Ok(_)), b'+' | b'-') => Ok(()),
        _ => Err(Fail::Bad),
    }
}
