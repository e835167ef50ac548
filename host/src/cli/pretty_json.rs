//! Indenting JSON text for people to read, without parsing it into values: whatever
//! JSON superstep accepts (nested past any recursion limit, numbers past `f64`, lone
//! surrogate escapes) prints, with its numbers and strings exactly as they are written.

/// `json` (valid JSON text) indented two spaces a level, as `serde_json`'s pretty
/// printer does: `{`/`[` open a level, `,` starts a line, `:` is followed by a space,
/// empty objects and arrays stay `{}` and `[]`. Strings and numbers are copied as they
/// are.
pub fn indent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    let mut depth = 0usize;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                copy_string_rest(&mut chars, &mut out);
            }
            '{' | '[' => {
                skip_whitespace(&mut chars);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn skip_whitespace(chars: &mut std::iter::Peekable<std::str::Chars>) {
    while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
        chars.next();
    }
}

/// Copies the rest of a string whose opening quote was copied, escapes as they are.
fn copy_string_rest(chars: &mut std::iter::Peekable<std::str::Chars>, out: &mut String) {
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            '"' => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_as_serde_json_does() {
        let samples = [
            r#"{"a":1,"b":[1,2,{"c":"x,y:{[\"z\"]}"}],"e":{},"f":[]}"#,
            r#"[ { "k" : [ ] , "l" : { } } , "\\" , -15 , 2.5 , null , true ]"#,
            r#""just a string""#,
            "12",
        ];
        for sample in samples {
            let value: serde_json::Value = serde_json::from_str(sample).unwrap();
            assert_eq!(
                indent(sample),
                serde_json::to_string_pretty(&value).unwrap(),
                "{sample}"
            );
        }
    }

    #[test]
    fn prints_what_a_value_cannot_hold() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let indented = indent(&deep);
        assert_eq!(indented.lines().count(), 2 * 9_999 + 1);
        assert!(indented.contains(&format!("\n{}[]\n", "  ".repeat(9_999))));
        assert_eq!(indent(r#"{"n":1e999}"#), "{\n  \"n\": 1e999\n}");
        assert_eq!(indent(r#"["\ud800"]"#), "[\n  \"\\ud800\"\n]");
    }
}
