//! The names of the core's enums in configs and APIs (`"half_open"`, `"exact-batched"`), read back.

/// The member of `all` whose `name` is `s`; the error lists the names, e.g.
/// `outcome must be one of success, failure, cancelled; got "ok"`.
pub fn parse<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
    s: &str,
) -> Result<T, String> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        format!("{what} must be one of {}; got {s:?}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_by_name_or_lists_the_names() {
        let all = [1u8, 2];
        let name = |v: u8| if v == 1 { "one" } else { "two" };
        assert_eq!(super::parse(&all, name, "n", "two"), Ok(2));
        assert_eq!(
            super::parse(&all, name, "n", "three"),
            Err("n must be one of one, two; got \"three\"".to_string())
        );
    }
}
