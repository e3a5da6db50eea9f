//! Default names: the kebab-case of a type name.

/// `TicketOpened` -> `ticket-opened`, `HTTPRequestSent` -> `http-request-sent`,
/// `V2Escalated` -> `v2-escalated`.
pub(crate) fn kebab_case(ident: &str) -> String {
    let chars: Vec<char> = ident.trim_start_matches("r#").chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower);
            if boundary && !out.ends_with('-') {
                out.push('-');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::kebab_case;

    #[test]
    fn kebab_cases() {
        for (ident, kebab) in [
            ("TicketOpened", "ticket-opened"),
            ("Ticket", "ticket"),
            ("HTTPRequestSent", "http-request-sent"),
            ("V2Escalated", "v2-escalated"),
            ("TicketEscalatedV1", "ticket-escalated-v1"),
            ("snake_case_name", "snake-case-name"),
            ("A", "a"),
        ] {
            assert_eq!(kebab_case(ident), kebab, "{ident}");
        }
    }
}
