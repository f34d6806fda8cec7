//! Range templates: `{n}`, `{n:0W}` and `{port}` in the values of a
//! `[[device_range]]`, expanded before any driver sees the device.

/// Expands `{n}`, `{n:0W}` and `{port}` in a range template.
pub(super) fn expand(template: &str, n: u64, port: Option<u64>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{template:?}: unclosed '{{'"))?;
        let spec = &after[..close];
        match spec {
            "n" => out.push_str(&n.to_string()),
            "port" => match port {
                Some(p) => out.push_str(&p.to_string()),
                None => return Err(format!("{template:?}: {{port}} needs port_start")),
            },
            s if s.starts_with("n:0") => {
                let width: usize = s[3..]
                    .parse()
                    .map_err(|_| format!("{template:?}: bad width in {{{s}}}"))?;
                if width > 20 {
                    return Err(format!("{template:?}: width in {{{s}}} is over 20"));
                }
                out.push_str(&format!("{n:0width$}"));
            }
            other => {
                return Err(format!(
                "{template:?}: unknown placeholder {{{other}}} (known: {{n}}, {{n:04}}, {{port}})"
            ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
