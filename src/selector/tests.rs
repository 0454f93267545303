//! The selector language against a table of expressions and expected results.

use super::*;

const MSG: [(&str, &str); 9] = [
    ("type", "car"),
    ("color", "blue"),
    ("price", "12.5"),
    ("qty", "3"),
    ("name", "100%_off"),
    ("flag", "true"),
    ("persistent", "true"),
    ("correlation-id", "c-1"),
    ("space", " 7 "),
];

fn eval(s: &str) -> bool {
    match Selector::parse(s) {
        Ok(sel) => sel.matches(&MSG),
        Err(e) => panic!("{s:?} did not parse: {e}"),
    }
}

#[test]
fn table_of_expressions() {
    let table: &[(&str, bool)] = &[
        ("type = 'car'", true),
        ("type = 'bike'", false),
        ("type <> 'bike'", true),
        ("TYPE = 'car'", false),
        ("type = 'car' AND color = 'blue'", true),
        ("type = 'car' and color = 'red'", false),
        ("type = 'bike' OR color = 'blue'", true),
        ("NOT type = 'bike'", true),
        ("NOT (type = 'car')", false),
        ("price > 10", true),
        ("price > 12.5", false),
        ("price >= 12.5", true),
        ("price < 13 AND price > 12", true),
        ("qty = 3", true),
        ("qty = 3.0", true),
        ("qty + 1 = 4", true),
        ("qty * 2 - 1 = 5", true),
        ("qty / 2 = 1", true),
        ("qty / 2.0 = 1.5", true),
        ("-qty = -3", true),
        ("qty / 0 = 1", false),
        ("NOT (qty / 0 = 1)", false),
        ("0x10 = 16", true),
        ("16L = 16", true),
        ("2e1 = 20", true),
        (".5 < 1", true),
        ("1.5F > 1", true),
        ("qty BETWEEN 1 AND 3", true),
        ("qty BETWEEN 4 AND 9", false),
        ("qty NOT BETWEEN 4 AND 9", true),
        ("color IN ('red', 'blue')", true),
        ("color IN ('red')", false),
        ("color NOT IN ('red')", true),
        ("missing IN ('red')", false),
        ("NOT missing IN ('red')", false),
        ("color LIKE 'bl%'", true),
        ("color LIKE 'b_ue'", true),
        ("color LIKE 'b_e'", false),
        ("color LIKE '%'", true),
        ("color NOT LIKE 'r%'", true),
        ("name LIKE '100\\%\\_off' ESCAPE '\\'", true),
        ("name LIKE '100!%%' ESCAPE '!'", true),
        ("name LIKE '100!_%' ESCAPE '!'", false),
        ("name LIKE '%off'", true),
        ("name LIKE '%o%f%'", true),
        ("missing IS NULL", true),
        ("type IS NULL", false),
        ("type IS NOT NULL", true),
        ("missing = 'x'", false),
        ("NOT missing = 'x'", false),
        ("missing = 'x' OR type = 'car'", true),
        ("missing = 'x' AND type = 'car'", false),
        ("NOT (missing = 'x' AND type = 'bike')", true),
        ("flag", true),
        ("flag = TRUE", true),
        ("flag AND TRUE", true),
        ("FALSE OR flag", true),
        ("type = 'car' AND (color = 'red' OR qty > 2)", true),
        ("type = 'car' AND color = 'red' OR qty > 2", true),
        ("type = 'bike' AND color = 'red' OR qty > 5", false),
        ("JMSType = 'car'", true),
        ("JMSCorrelationID = 'c-1'", true),
        ("JMSDeliveryMode = 'PERSISTENT'", true),
        ("\"correlation-id\" = 'c-1'", true),
        ("'it''s' = 'it''s'", true),
        ("space = 7", true),
        ("color > 5", false),
        ("color = 5", false),
        ("price = '12.5'", true),
        ("9223372036854775807 + 1 > 0", true),
    ];
    for &(s, want) in table {
        assert_eq!(eval(s), want, "{s}");
    }
}

#[test]
fn malformed_selectors_name_the_position() {
    let table: &[(&str, usize)] = &[
        ("", 0),
        ("   ", 0),
        ("type =", 6),
        ("type = 'car", 7),
        ("type = 'car' AND", 16),
        ("(type = 'car'", 13),
        ("type == 'car'", 6),
        ("type = 'a' extra", 11),
        ("type # 'a'", 5),
        ("color IN ()", 10),
        ("color IN ('a' 'b')", 14),
        ("color LIKE 5", 11),
        ("color LIKE 'a' ESCAPE 'ab'", 22),
        ("color LIKE 'a!' ESCAPE '!'", 11),
        ("qty BETWEEN 1 OR 2", 14),
        ("qty IS 5", 7),
        ("'a'", 0),
        ("qty + 1", 0),
        ("1 AND qty = 1", 0),
        ("qty = 1 AND 2", 12),
        ("1x = 1", 0),
        ("\"unterminated = 1", 0),
        ("qty NOT = 1", 8),
    ];
    for &(s, pos) in table {
        match Selector::parse(s) {
            Ok(sel) => panic!("{s:?} parsed as {sel:?}"),
            Err(e) => assert_eq!(e.pos, pos, "{s:?}: {e}"),
        }
    }
}

#[test]
fn bounds_are_enforced_without_exhausting_the_stack() {
    let deep = format!("{}a = 1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(Selector::parse(&deep).unwrap_err().kind, ErrorKind::TooLong);
    let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(Selector::parse(&deep).unwrap_err().kind, ErrorKind::TooDeep);
    let nots = format!("{}a = 1", "NOT ".repeat(2000));
    assert_eq!(Selector::parse(&nots).unwrap_err().kind, ErrorKind::TooLong);
    let nots = format!("{}a = 1", "NOT ".repeat(100));
    assert_eq!(Selector::parse(&nots).unwrap_err().kind, ErrorKind::TooDeep);
    let neg = format!("{}1 = 1", "-".repeat(200));
    assert_eq!(Selector::parse(&neg).unwrap_err().kind, ErrorKind::TooDeep);
    let chain = format!("a{} = 1", " + 1".repeat(100));
    assert_eq!(Selector::parse(&chain).unwrap_err().kind, ErrorKind::TooDeep);
    let wide = (0..400).map(|i| format!("a={i}")).collect::<Vec<_>>().join(" OR ");
    assert!(wide.len() < MAX_LEN);
    assert_eq!(Selector::parse(&wide).unwrap_err().kind, ErrorKind::TooBig);
    let fits = (0..100).map(|i| format!("a = {i}")).collect::<Vec<_>>().join(" OR ");
    assert!(Selector::parse(&fits).unwrap().matches(&[("a", "99")]));
}

#[test]
fn every_prefix_of_every_selector_parses_or_fails_cleanly() {
    let all = [
        "type = 'car' AND (color IN ('red', 'blue') OR NOT qty BETWEEN -1 AND 0x7f) AND name NOT LIKE 'x!%%' ESCAPE '!'",
        "\"a-b\" IS NOT NULL OR price * 2 / (qty - 3) >= 1.5e2 AND flag = FALSE",
        "JMSPriority > 4 AND JMSType <> 'ünïcode' OR é = 'ö'",
    ];
    for s in all {
        assert!(Selector::parse(s).is_ok(), "{s}");
        for (i, _) in s.char_indices() {
            if let Err(e) = Selector::parse(&s[..i]) {
                assert!(e.pos <= i, "{:?}: position {} past the end", &s[..i], e.pos);
            }
        }
    }
}

#[test]
fn errors_read_well() {
    let e = Selector::parse("type = 'car' AND").unwrap_err();
    assert_eq!(e.to_string(), "selector error at position 16: expected a value, found the end of the selector");
}
