//! Masking of personal data in logs and in `deliver --dry-run`: e-mail addresses keep the
//! first letter of the mailbox and the domain (`z***@ent.example.com`), mobile numbers the first
//! three and last four digits (`138****5678`), robot and webhook URLs their scheme, host and
//! path with every query value hidden (the DingTalk `access_token`, the WeCom `key`) and every
//! token-like path segment (20 or more characters mixing letters and digits: a key carried in
//! the path, as many webhook services do) cut to its first four characters.
//!
//! Invariant: every line the delivery worker prints about a recipient goes through
//! [`recipient`] or [`text`]; no address, token or secret is printed as is.

use pharmwatch_core::contacts::Channel;

/// An e-mail address, masked.
pub fn email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// A phone number (any run of digits of length ≥ 7), masked to its first three and last four
/// digits.
pub fn phone(number: &str) -> String {
    let digits: Vec<char> = number.chars().collect();
    if digits.len() < 7 {
        return "*".repeat(digits.len());
    }
    let head: String = digits[..3].iter().collect();
    let tail: String = digits[digits.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(digits.len() - 7))
}

/// Whether a URL path segment looks like a secret: 20 or more characters with letters and
/// digits (a credit code, 18, stays readable: it names whose address it is).
fn token_like(segment: &str) -> bool {
    segment.chars().count() >= 20
        && segment.chars().any(|c| c.is_ascii_digit())
        && segment.chars().any(|c| c.is_alphabetic())
}

/// The path of a URL (after `scheme://host`) with its token-like segments cut.
fn path(base: &str) -> String {
    let start = base.find("://").map_or(0, |i| i + 3);
    let Some(slash) = base[start..].find('/').map(|i| i + start) else {
        return base.to_string();
    };
    let masked: Vec<String> = base[slash..]
        .split('/')
        .map(|seg| {
            if token_like(seg) {
                format!("{}***", seg.chars().take(4).collect::<String>())
            } else {
                seg.to_string()
            }
        })
        .collect();
    format!("{}{}", &base[..slash], masked.join("/"))
}

/// A URL with every query value and every token-like path segment hidden.
pub fn url(address: &str) -> String {
    let (base, query) = match address.split_once('?') {
        Some((b, q)) => (path(b), Some(q)),
        None => (path(address), None),
    };
    match query {
        Some(query) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{k}=***"),
                    None => "***".to_string(),
                })
                .collect();
            format!("{base}?{}", q.join("&"))
        }
        None => base,
    }
}

/// A contact's address as it may appear in logs.
pub fn recipient(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Email => email(address),
        Channel::Webhook | Channel::Dingtalk | Channel::Wecom => url(address),
    }
}

/// Free text (an error message from a server or library) with e-mail addresses, phone numbers
/// and URL query values masked.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        let trimmed = w.trim_end_matches(['.', ',', ';', ')', '>', ']', '"', '\'']);
        let rest = &w[trimmed.len()..];
        let masked = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            url(trimmed)
        } else if trimmed.contains('@') {
            let start = trimmed
                .find(|c: char| c.is_alphanumeric())
                .unwrap_or(trimmed.len());
            format!("{}{}", &trimmed[..start], email(&trimmed[start..]))
        } else {
            mask_digit_runs(trimmed)
        };
        out.push_str(&masked);
        out.push_str(rest);
    };
    for c in s.chars() {
        if c.is_whitespace() || c == '<' || c == '(' || c == '"' || c == '\'' {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Masks every run of 7 or more digits (phone numbers) in a word.
fn mask_digit_runs(w: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in w.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            out.push_str(&if run.len() >= 7 {
                phone(&run)
            } else {
                run.clone()
            });
            run.clear();
            out.push(c);
        }
    }
    out.push_str(&if run.len() >= 7 { phone(&run) } else { run });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_numbers_and_tokens_are_masked() {
        assert_eq!(
            email("lead00001@ent00001.example.com"),
            "l***@ent00001.example.com"
        );
        assert_eq!(phone("13847100037"), "138****0037");
        assert_eq!(
            url("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1&sign=x"),
            "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=***&sign=***"
        );
        // A key in the path is cut; a credit code naming the enterprise stays readable.
        assert_eq!(
            url("https://hooks.example/services/T0A1B2C3D/B0A1B2C3D/aB3dE5gH7jK9mN1pQ3rS5tU7"),
            "https://hooks.example/services/T0A1B2C3D/B0A1B2C3D/aB3d***"
        );
        assert_eq!(
            url("http://127.0.0.1:9/hooks/91150100MA0000001X"),
            "http://127.0.0.1:9/hooks/91150100MA0000001X"
        );
        assert_eq!(
            text("POST https://h.example/hook/0123456789abcdefghij0123 refused (HTTP 403)"),
            "POST https://h.example/hook/0123*** refused (HTTP 403)"
        );
        assert_eq!(
            recipient(Channel::Wecom, "https://q.example/send?key=k1"),
            "https://q.example/send?key=***"
        );
        let t = text(
            "550 mailbox <zhang.san@ent.example.com> unknown, call 13847100037; see https://h.example/x?token=s3cret.",
        );
        assert!(!t.contains("zhang.san"), "{t}");
        assert!(!t.contains("13847100037"), "{t}");
        assert!(!t.contains("s3cret"), "{t}");
        assert!(t.contains("z***@ent.example.com"), "{t}");
        assert!(t.contains("138****0037"), "{t}");
        assert!(t.contains("HTTP") || t.contains("550"), "{t}");
        // Short numbers (status codes, counts) stay readable.
        assert_eq!(
            text("HTTP 500 after 3 attempts"),
            "HTTP 500 after 3 attempts"
        );
    }
}
