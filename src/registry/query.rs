//! The images API v2 listing query (`GET /v2/images`): its filters, sorting and visibility
//! rules, parsed into the same [`ListQuery`] the v1 listing uses, so one registry query
//! serves both APIs.
//!
//! The v2 syntax (Images API v2 reference, as Glance 33 answers it):
//!
//! - `visibility=public|private|shared|community|all` and `member_status=accepted|pending|
//!   rejected|all` (default `accepted`) choose among the images the caller may see
//!   ([`V2Scope`]); `os_hidden=true|false` (default `false`).
//! - `name`, `status`, `disk_format`, `container_format`, `id`: exact, or `in:a,b,"c,d"`;
//!   `owner`, `protected`, `min_ram`, `min_disk`: exact; `tag` (repeatable): all must be on
//!   the image; `size_min`, `size_max`; `created_at` / `updated_at` with `gt:` `gte:` `lt:`
//!   `lte:` `eq:` `neq:` and an ISO 8601 time; any other parameter is an additional
//!   property that must have that value.
//! - `limit`, `marker`; `sort_key` / `sort_dir` (repeatable, one `sort_dir` for all keys or
//!   one per key) or `sort=key[:dir],…`, not both.
//!
//! A query crosses to a remote registry as these same parameters plus `api=v2`
//! ([`ListQuery::to_pairs`]); the registry parses it back with [`ListQuery::parse_v2`].

use super::{ListQuery, MemberStatus, PageLimits};
use crate::error::{Error, Result};
use crate::image::{self, Visibility};

/// The `visibility` filter of a v2 listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityFilter {
    /// Only images of this visibility (among those the caller may list).
    Only(Visibility),
    /// Every image the caller may list, community images included.
    All,
}

/// The `member_status` filter: which images shared with the caller are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatusFilter {
    /// Memberships in this status.
    Only(MemberStatus),
    /// Any status.
    All,
}

/// How a v2 listing chooses images by who may see them.
///
/// A non-admin caller lists public images, its own, images shared with it whose membership
/// matches `member_status`, and community images only with `visibility=community|all`. An
/// admin lists every image. `visibility` then narrows either to one visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Scope {
    /// `None`: the default listing.
    pub visibility: Option<VisibilityFilter>,
    /// Default `accepted`.
    pub member_status: MemberStatusFilter,
    /// `os_hidden` images are listed only with `os_hidden=true` (and then only they).
    pub os_hidden: bool,
}

impl Default for V2Scope {
    fn default() -> V2Scope {
        V2Scope {
            visibility: None,
            member_status: MemberStatusFilter::Only(MemberStatus::Accepted),
            os_hidden: false,
        }
    }
}

/// A time comparison operator (`gt:` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `=`
    Eq,
    /// `!=`
    Neq,
}

impl CmpOp {
    const ALL: [CmpOp; 6] = [
        CmpOp::Gt,
        CmpOp::Gte,
        CmpOp::Lt,
        CmpOp::Lte,
        CmpOp::Eq,
        CmpOp::Neq,
    ];

    /// The operator's name in a query (`gte`).
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => "gt",
            CmpOp::Gte => "gte",
            CmpOp::Lt => "lt",
            CmpOp::Lte => "lte",
            CmpOp::Eq => "eq",
            CmpOp::Neq => "neq",
        }
    }

    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
            CmpOp::Eq => "=",
            CmpOp::Neq => "<>",
        }
    }
}

/// Sort keys of v2 listings.
pub const V2_SORT_KEYS: [&str; 15] = [
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "virtual_size",
    "min_disk",
    "min_ram",
    "owner",
    "visibility",
    "protected",
    "os_hidden",
];

/// Columns that take `in:` lists.
const IN_COLUMNS: [&str; 5] = ["id", "name", "status", "disk_format", "container_format"];

impl ListQuery {
    /// Parses the parameters of `GET /v2/images`. Invalid values are `BadRequest` naming
    /// the parameter.
    pub fn parse_v2(pairs: &[(String, String)], limits: PageLimits) -> Result<ListQuery> {
        let mut q = ListQuery {
            sort_key: "created_at",
            sort_asc: false,
            limit: limits.default,
            v2: Some(V2Scope::default()),
            ..ListQuery::default()
        };
        let mut scope = V2Scope::default();
        let mut sort_keys: Vec<&'static str> = Vec::new();
        let mut sort_dirs: Vec<bool> = Vec::new();
        let mut sort_param: Option<&str> = None;
        for (key, value) in pairs {
            let value = value.as_str();
            match key.as_str() {
                "api" => {}
                "visibility" => {
                    scope.visibility = Some(match value {
                        "all" => VisibilityFilter::All,
                        v => VisibilityFilter::Only(v.parse().map_err(|_| {
                            Error::bad_request(format!(
                                "Invalid visibility value: {v}. Valid values: public, \
                                 private, shared, community, all"
                            ))
                        })?),
                    })
                }
                "member_status" => {
                    scope.member_status = match value {
                        "all" => MemberStatusFilter::All,
                        v => MemberStatusFilter::Only(v.parse().map_err(|_| {
                            Error::bad_request(format!(
                                "Invalid status value: {v}. Valid values: pending, accepted, \
                                 rejected, all"
                            ))
                        })?),
                    }
                }
                "os_hidden" => scope.os_hidden = parse_bool("os_hidden", value)?,
                "protected" => {
                    parse_bool("protected", value)?;
                    q.equals.push(("protected", value.to_ascii_lowercase()));
                }
                "owner" => q.equals.push(("owner", value.to_string())),
                "min_ram" | "min_disk" => {
                    let col = if key == "min_ram" {
                        "min_ram"
                    } else {
                        "min_disk"
                    };
                    image::parse_count(col, value)?;
                    q.equals.push((col, value.to_string()));
                }
                k if IN_COLUMNS.contains(&k) => {
                    let col = IN_COLUMNS.into_iter().find(|c| *c == k).unwrap_or("id");
                    match value.strip_prefix("in:") {
                        Some(list) => q.any_of.push((col, split_in_list(col, list)?)),
                        None => q.equals.push((col, value.to_string())),
                    }
                }
                "tag" => q.tags.push(value.to_string()),
                "size_min" => q.size_min = Some(image::parse_count("size_min", value)?),
                "size_max" => q.size_max = Some(image::parse_count("size_max", value)?),
                "created_at" | "updated_at" => {
                    let col = if key == "created_at" {
                        "created_at"
                    } else {
                        "updated_at"
                    };
                    q.times.push(parse_time_filter(col, value)?);
                }
                "limit" => {
                    let n = value
                        .parse::<u64>()
                        .map_err(|_| Error::bad_request("limit param must be an integer"))?;
                    q.limit = n.min(limits.max);
                }
                "marker" => q.marker = Some(value.to_string()),
                "sort_key" => sort_keys.push(sort_key(value)?),
                "sort_dir" => sort_dirs.push(sort_dir(value)?),
                "sort" => sort_param = Some(value),
                // Everything else is an additional property.
                k => {
                    image::validate_property_key(k)?;
                    q.properties.push((k.to_string(), value.to_string()));
                }
            }
        }
        let order = match sort_param {
            Some(_) if !sort_keys.is_empty() || !sort_dirs.is_empty() => {
                return Err(Error::bad_request(
                    "The 'sort' parameter cannot be used with 'sort_key' or 'sort_dir'",
                ));
            }
            Some(s) => parse_sort(s)?,
            None => pair_keys_and_dirs(&sort_keys, &sort_dirs)?,
        };
        if let Some(((key, asc), rest)) = order.split_first() {
            q.sort_key = key;
            q.sort_asc = *asc;
            q.then_by = rest.to_vec();
        }
        q.v2 = Some(scope);
        Ok(q)
    }

    /// The v2 query as URL parameters in the v2 syntax, with `api=v2` (the remote registry
    /// client sends these; [`ListQuery::parse_v2`] reads them back).
    pub(crate) fn v2_pairs(&self, scope: &V2Scope) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![("api".into(), "v2".into())];
        let mut push = |k: &str, val: String| v.push((k.to_string(), val));
        match scope.visibility {
            Some(VisibilityFilter::All) => push("visibility", "all".into()),
            Some(VisibilityFilter::Only(vis)) => push("visibility", vis.as_str().into()),
            None => {}
        }
        push(
            "member_status",
            match scope.member_status {
                MemberStatusFilter::All => "all".into(),
                MemberStatusFilter::Only(m) => m.as_str().into(),
            },
        );
        push("os_hidden", scope.os_hidden.to_string());
        for (k, val) in &self.equals {
            push(k, val.clone());
        }
        for (k, vals) in &self.any_of {
            push(k, format!("in:{}", join_in_list(vals)));
        }
        for t in &self.tags {
            push("tag", t.clone());
        }
        if let Some(n) = self.size_min {
            push("size_min", n.to_string());
        }
        if let Some(n) = self.size_max {
            push("size_max", n.to_string());
        }
        for (col, op, t) in &self.times {
            push(
                col,
                format!("{}:{}", op.as_str(), crate::timeutil::display(t)),
            );
        }
        for (k, val) in &self.properties {
            push(k, val.clone());
        }
        let dir = |asc: bool| if asc { "asc" } else { "desc" };
        let mut sort = format!("{}:{}", self.sort_key, dir(self.sort_asc));
        for (k, asc) in &self.then_by {
            sort.push_str(&format!(",{k}:{}", dir(*asc)));
        }
        push("sort", sort);
        push("limit", self.limit.to_string());
        if let Some(m) = &self.marker {
            push("marker", m.clone());
        }
        v
    }
}

/// Whether a parameter list is a v2 query sent to the registry ([`ListQuery::v2_pairs`]).
pub fn is_v2(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(k, v)| k == "api" && v == "v2")
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::bad_request(format!(
            "Invalid value for '{key}': '{value}' is not a boolean (true or false)"
        ))),
    }
}

fn sort_key(value: &str) -> Result<&'static str> {
    V2_SORT_KEYS
        .into_iter()
        .find(|k| *k == value)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "Invalid sort key: {value}. It is not a sortable attribute; use one of: {}",
                V2_SORT_KEYS.join(", ")
            ))
        })
}

fn sort_dir(value: &str) -> Result<bool> {
    match value {
        "asc" => Ok(true),
        "desc" => Ok(false),
        _ => Err(Error::bad_request(format!(
            "Invalid sort direction: {value}. Valid values: asc, desc"
        ))),
    }
}

/// `sort_key`s with their `sort_dir`s: none (desc for all), one (for all), or one per key.
fn pair_keys_and_dirs(keys: &[&'static str], dirs: &[bool]) -> Result<Vec<(&'static str, bool)>> {
    if keys.is_empty() {
        return match dirs {
            [] => Ok(vec![("created_at", false)]),
            [asc] => Ok(vec![("created_at", *asc)]),
            _ => Err(Error::bad_request(
                "The number of sort_dir values must not exceed the number of sort_key values",
            )),
        };
    }
    match dirs.len() {
        0 => Ok(keys.iter().map(|k| (*k, false)).collect()),
        1 => Ok(keys.iter().map(|k| (*k, dirs[0])).collect()),
        n if n == keys.len() => Ok(keys.iter().copied().zip(dirs.iter().copied()).collect()),
        _ => Err(Error::bad_request(
            "The number of sort_dir values must be one or equal to the number of sort_key \
             values",
        )),
    }
}

/// `sort=name:asc,size` (direction default desc).
fn parse_sort(value: &str) -> Result<Vec<(&'static str, bool)>> {
    value
        .split(',')
        .map(|part| {
            let part = part.trim();
            let (k, d) = match part.split_once(':') {
                Some((k, d)) => (k.trim(), Some(d.trim())),
                None => (part, None),
            };
            Ok((sort_key(k)?, d.map_or(Ok(false), sort_dir)?))
        })
        .collect()
}

/// `a,b,"c,d"` → [a, b, c,d]; empty items are refused.
fn split_in_list(col: &str, list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(Error::bad_request(format!(
            "Invalid filter value for '{col}': a quote is not closed"
        )));
    }
    if !cur.is_empty() || was_quoted || !out.is_empty() {
        out.push(cur);
    }
    if out.is_empty() || out.iter().any(String::is_empty) {
        return Err(Error::bad_request(format!(
            "Invalid filter value for '{col}': 'in:' needs a comma-separated list of values"
        )));
    }
    Ok(out)
}

/// The inverse of [`split_in_list`]: values with a comma are quoted.
fn join_in_list(vals: &[String]) -> String {
    vals.iter()
        .map(|v| {
            if v.contains(',') {
                format!("\"{v}\"")
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `gte:2024-01-01T00:00:00Z` (an operator is required; `eq` when absent).
fn parse_time_filter(col: &'static str, value: &str) -> Result<(&'static str, CmpOp, String)> {
    let (op, time) = match value.split_once(':') {
        Some((op, rest)) if CmpOp::ALL.iter().any(|o| o.as_str() == op) => {
            let op = CmpOp::ALL
                .into_iter()
                .find(|o| o.as_str() == op)
                .unwrap_or(CmpOp::Eq);
            (op, rest)
        }
        _ => (CmpOp::Eq, value),
    };
    let stored = crate::timeutil::try_normalise(time).map_err(|why| {
        Error::bad_request(format!(
            "Invalid {col} filter '{value}': expected [gt|gte|lt|lte|eq|neq:]<ISO 8601 time> \
             ({why})"
        ))
    })?;
    Ok((col, op, stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ListQuery> {
        ListQuery::parse_v2(&crate::http::parse_query(s), PageLimits::default())
    }

    #[test]
    fn defaults() {
        let q = parse("").unwrap_or_default();
        assert_eq!((q.sort_key, q.sort_asc, q.limit), ("created_at", false, 25));
        assert_eq!(q.v2, Some(V2Scope::default()));
    }

    #[test]
    fn filters() {
        let q = parse(
            "name=in:a,%22b,c%22&status=active&tag=x&tag=y&size_min=1&visibility=shared\
             &member_status=all&os_hidden=true&created_at=gte:2024-01-02T03:04:05Z\
             &os_distro=ubuntu&protected=True&owner=p",
        )
        .unwrap_or_default();
        assert_eq!(q.any_of, vec![("name", vec!["a".into(), "b,c".into()])]);
        assert!(q.equals.contains(&("status", "active".into())));
        assert!(q.equals.contains(&("protected", "true".into())));
        assert!(q.equals.contains(&("owner", "p".into())));
        assert_eq!(q.tags, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(q.properties, vec![("os_distro".into(), "ubuntu".into())]);
        assert_eq!(q.times.len(), 1);
        assert_eq!(q.times[0].1, CmpOp::Gte);
        let scope = q.v2.unwrap_or_default();
        assert_eq!(
            scope.visibility,
            Some(VisibilityFilter::Only(Visibility::Shared))
        );
        assert_eq!(scope.member_status, MemberStatusFilter::All);
        assert!(scope.os_hidden);
    }

    #[test]
    fn sorting() {
        let q = parse("sort_key=name&sort_key=size&sort_dir=asc").unwrap_or_default();
        assert_eq!((q.sort_key, q.sort_asc), ("name", true));
        assert_eq!(q.then_by, vec![("size", true)]);
        let q = parse("sort=name:asc,size").unwrap_or_default();
        assert_eq!((q.sort_key, q.sort_asc), ("name", true));
        assert_eq!(q.then_by, vec![("size", false)]);
        for bad in [
            "sort_key=bogus",
            "sort_dir=up",
            "sort=name&sort_key=size",
            "sort_key=a&sort_key=b&sort_dir=asc&sort_dir=desc&sort_dir=asc",
            "sort=name:sideways",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "visibility=everyone",
            "member_status=maybe",
            "os_hidden=perhaps",
            "protected=2",
            "limit=-1",
            "size_min=x",
            "created_at=gt:yesterday",
            "id=in:",
            "name=in:a,,b",
            "name=in:%22a",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_through_the_registry_wire_form() {
        let q = parse(
            "name=in:a,%22b,c%22&tag=x&visibility=all&created_at=lt:2024-01-02T03:04:05Z\
             &os_distro=ubuntu&sort=name:asc,size:desc&limit=3&marker=m",
        )
        .unwrap_or_default();
        let scope = q.v2.unwrap_or_default();
        let pairs = q.v2_pairs(&scope);
        assert!(is_v2(&pairs));
        let back = ListQuery::parse_v2(&pairs, PageLimits::default());
        assert_eq!(back.ok(), Some(q));
    }
}
