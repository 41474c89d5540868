//! Reading the verdicts out of a verify answer without parsing it into values: the `is_valid`
//! members of the objects at one nesting depth, in order, with no allocation.
//!
//! A single verify answers one object (`{"is_valid":…}`, depth 1); a batch answers
//! `{"results":[{"is_valid":…},…]}`, whose items are at depth 3. The scanner tracks strings
//! (with escapes) and nesting, so an `"is_valid"` inside a string or a deeper object, such as a
//! key's metadata, is never mistaken for a verdict. It checks no more of JSON than that: the
//! server's JSON is tested elsewhere; here only the verdicts are read.

/// Depth of the answer object of a single verify.
pub const SINGLE_DEPTH: u32 = 1;
/// Depth of each item of a batch verify's `results`.
pub const BATCH_DEPTH: u32 = 3;

/// Calls `each` with every `is_valid` boolean that is a member of an object at `depth`, in order.
/// Returns how many there were, or `None` if the body is not well nested or a verdict is not a
/// boolean.
pub fn scan(body: &[u8], depth: u32, mut each: impl FnMut(bool)) -> Option<usize> {
    let mut level = 0u32;
    let mut found = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'{' | b'[' => level += 1,
            b'}' | b']' => level = level.checked_sub(1)?,
            b'"' => {
                let start = i + 1;
                let end = string_end(body, start)?;
                i = end + 1;
                if level == depth && &body[start..end] == b"is_valid" {
                    let after = skip_ws(body, i);
                    // A string followed by a colon is a member name; anything else is a value.
                    if body.get(after) == Some(&b':') {
                        let value = skip_ws(body, after + 1);
                        let rest = &body[value..];
                        let (verdict, len) = if rest.starts_with(b"true") {
                            (true, 4)
                        } else if rest.starts_with(b"false") {
                            (false, 5)
                        } else {
                            return None;
                        };
                        each(verdict);
                        found += 1;
                        i = value + len;
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (level == 0).then_some(found)
}

/// The index of the quote closing the string whose contents start at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, depth: u32, expected: Option<&[bool]>) {
        let mut seen = Vec::new();
        let count = scan(body.as_bytes(), depth, |v| seen.push(v));
        assert_eq!(count.map(|_| seen.as_slice()), expected, "{body}");
        if let Some(n) = count {
            assert_eq!(n, seen.len());
        }
    }

    #[test]
    fn reads_single_answers() {
        check(r#"{"is_valid":true,"key_id":"k"}"#, SINGLE_DEPTH, Some(&[true]));
        let rejected = r#"{"is_valid":false,"error_code":"VERIFICATION_ERROR_NOT_FOUND","error_message":"x"}"#;
        check(rejected, SINGLE_DEPTH, Some(&[false]));
        check(r#"{ "actor_id" : "a", "is_valid" : true }"#, SINGLE_DEPTH, Some(&[true]));
        check("{}", SINGLE_DEPTH, Some(&[]));
    }

    #[test]
    fn reads_batch_answers() {
        let batch = r#"{"results":[{"is_valid":true,"scopes":["a"]},{"is_valid":false},{"is_valid":true}]}"#;
        check(batch, BATCH_DEPTH, Some(&[true, false, true]));
        check(r#"{"results":[]}"#, BATCH_DEPTH, Some(&[]));
        // The single-verify depth sees none of a batch's verdicts.
        check(batch, SINGLE_DEPTH, Some(&[]));
    }

    #[test]
    fn ignores_look_alikes() {
        // In metadata (deeper), as a value, and inside strings, escaped or not.
        check(r#"{"metadata":{"is_valid":true},"is_valid":false}"#, SINGLE_DEPTH, Some(&[false]));
        check(r#"{"name":"is_valid","is_valid":true}"#, SINGLE_DEPTH, Some(&[true]));
        check(r#"{"name":"\"is_valid\":false","is_valid":true}"#, SINGLE_DEPTH, Some(&[true]));
        check(r#"{"name":"a\\","is_valid":true}"#, SINGLE_DEPTH, Some(&[true]));
        check(r#"{"tags":["is_valid"],"is_valid":true}"#, SINGLE_DEPTH, Some(&[true]));
    }

    #[test]
    fn refuses_broken_bodies() {
        check(r#"{"is_valid":"yes"}"#, SINGLE_DEPTH, None);
        check(r#"{"is_valid":true"#, SINGLE_DEPTH, None);
        check(r#"{"is_valid":true}}"#, SINGLE_DEPTH, None);
        check(r#"{"is_valid:true}"#, SINGLE_DEPTH, None);
        check(r#"{"is_valid":"#, SINGLE_DEPTH, None);
    }
}
