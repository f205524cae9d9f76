//! The image registry: where image metadata lives.
//!
//! [`Registry`] is the one interface; [`db::SqlRegistry`] keeps the records in a SQL
//! embedded SQLite database (the default), and [`client::RemoteRegistry`] talks to a
//! `glance-registry` over HTTP. [`server`] is the registry's own JSON API. The listing
//! parameters of spec §5.1 are parsed once, here, into [`ListQuery`].

pub mod client;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod conformance_v2;
pub mod db;
mod memo;
pub mod migrate;
pub mod query;
pub mod server;
pub mod sql;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Context;
use crate::error::{Error, Result};
use crate::image::{Image, ImageId, ImagePatch, Status};

/// The registry API's header that makes a `PUT /images/<id>` conditional on the image's
/// current status ([`Registry::update_if`]); glance-api sends it to a remote registry.
pub const IF_STATUS_HEADER: &str = "X-Glance-Registry-If-Status";

/// Registry operations, each checked against the caller's [`Context`] (spec §7.3). Ids are
/// [`ImageId`]s, parsed where they entered the program.
pub trait Registry: Send + Sync {
    /// Lists live, non-killed images the caller may list, per the query.
    fn list(&self, ctx: &Context, query: &ListQuery) -> Result<Vec<Image>>;
    /// One live image visible to the caller, else `NotFound`.
    fn get(&self, ctx: &Context, id: &ImageId) -> Result<Image>;
    /// [`Registry::get`] for a caller that only reads the image (HEAD, GET): a registry
    /// that keeps images in memory shares its copy instead of cloning it.
    fn get_shared(&self, ctx: &Context, id: &ImageId) -> Result<Arc<Image>> {
        self.get(ctx, id).map(Arc::new)
    }
    /// Creates an image. Status defaults to `active`; owner per spec §7.2; a duplicate id is
    /// `Duplicate`; validation failures are `BadRequest`.
    fn create(&self, ctx: &Context, patch: &ImagePatch) -> Result<Image>;
    /// Updates a live image the caller may modify (else `NotFound`). With `purge_props` the
    /// properties are replaced by the patch's set.
    fn update(
        &self,
        ctx: &Context,
        id: &ImageId,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image>;
    /// Updates a live image the caller may modify only if its status is `expected`, as one
    /// compare-and-set: `Conflict` when the status differs. The
    /// upload states use it: exactly one upload takes `queued → saving`, and only the
    /// holder of `saving` activates or kills the image.
    fn update_if(
        &self,
        ctx: &Context,
        id: &ImageId,
        expected: Status,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image>;
    /// Soft-deletes an image, its properties and memberships; returns the deleted record.
    fn delete(&self, ctx: &Context, id: &ImageId) -> Result<Image>;
    /// Live memberships of an image visible to the caller.
    fn members(&self, ctx: &Context, id: &ImageId) -> Result<Vec<Member>>;
    /// Adds (or revives) a membership; `can_share` None keeps an existing row's flag.
    fn add_member(
        &self,
        ctx: &Context,
        id: &ImageId,
        member: &str,
        can_share: Option<bool>,
    ) -> Result<()>;
    /// Removes a membership (no error when it does not exist).
    fn delete_member(&self, ctx: &Context, id: &ImageId, member: &str) -> Result<()>;
    /// Replaces all memberships of an image.
    fn replace_members(&self, ctx: &Context, id: &ImageId, members: &[MemberSpec]) -> Result<()>;
    /// Live memberships of `member` across live images.
    fn shared_images(&self, ctx: &Context, member: &str) -> Result<Vec<SharedImage>>;
    /// Sets the status of a live membership: the member itself (its owner id is `member`)
    /// or an admin may; the image must be visible to the caller. Returns the membership;
    /// `NotFound` when there is none.
    fn set_member_status(
        &self,
        ctx: &Context,
        id: &ImageId,
        member: &str,
        status: MemberStatus,
    ) -> Result<Member>;
}

/// Whether a member took up an image shared with it (v2 members; v1 ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Not decided yet: the image is visible but not listed by default.
    #[default]
    Pending,
    /// Listed in the member's image listings.
    Accepted,
    /// Not listed by default, still visible by id.
    Rejected,
}

impl MemberStatus {
    /// Every status.
    pub const ALL: [MemberStatus; 3] = [
        MemberStatus::Pending,
        MemberStatus::Accepted,
        MemberStatus::Rejected,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }
}

impl std::str::FromStr for MemberStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<MemberStatus> {
        MemberStatus::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "Invalid member status '{s}'. Valid values: pending, accepted, rejected"
                ))
            })
    }
}

/// A membership as listed under an image.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    /// The member's tenant (or user) id.
    pub member_id: String,
    /// Whether the member may share further.
    pub can_share: bool,
    /// Whether the member accepted the image (v2).
    #[serde(default)]
    pub status: MemberStatus,
    /// When the membership was made (stored form; empty from an old registry).
    #[serde(default)]
    pub created_at: String,
    /// Its last change (stored form), if any.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A membership as listed under a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedImage {
    /// The shared image.
    pub image_id: String,
    /// Whether the member may share further.
    pub can_share: bool,
}

/// One entry of a replace-members request; `can_share` None keeps an existing row's flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// The member's id.
    pub member_id: String,
    /// New flag, if given.
    pub can_share: Option<bool>,
}

impl MemberSpec {
    /// The body of a replace-members request (`PUT /images/<id>/members`, on the API and
    /// the registry alike): `{"memberships": [{"member_id": .., "can_share": ..}, ..]}`,
    /// without `can_share` where it is not given.
    pub fn memberships_body(members: &[MemberSpec]) -> serde_json::Value {
        let list: Vec<serde_json::Value> = members
            .iter()
            .map(|m| match m.can_share {
                Some(c) => serde_json::json!({ "member_id": m.member_id, "can_share": c }),
                None => serde_json::json!({ "member_id": m.member_id }),
            })
            .collect();
        serde_json::json!({ "memberships": list })
    }
}

/// Columns an image listing may be sorted by.
pub const SORT_KEYS: [&str; 8] = [
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
];

/// The `is_public` listing filter (spec §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicFilter {
    /// Default: public, or owned by the caller, or shared with the caller.
    #[default]
    VisibleToCaller,
    /// Admin `is_public=false`: every private image.
    Private,
    /// Admin `is_public=none`: everything.
    Any,
}

/// Page-size limits (from `limit_param_default` and `api_limit_max`).
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// Page size when `limit` is absent.
    pub default: u64,
    /// Largest page; bigger `limit`s are clamped.
    pub max: u64,
}

impl Default for PageLimits {
    fn default() -> PageLimits {
        PageLimits {
            default: 25,
            max: 1000,
        }
    }
}

/// Per-image limits (`image_property_quota`, `image_member_quota`), enforced by the
/// registry itself so that `glance-api` and a client of `glance-registry` meet the same ones.
///
/// A change is refused (413) only when it would leave an image with more than the quota
/// *and* more than it had before: an image already over a lowered quota can still be
/// updated, deleted and trimmed, but not grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Most properties of one image (`image_property_quota`, default 128).
    pub properties: u64,
    /// Most live members of one image (`image_member_quota`, default 128).
    pub members: u64,
    /// Most tags of one image (`image_tag_quota`, default 128).
    pub tags: u64,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            properties: 128,
            members: 128,
            tags: 128,
        }
    }
}

impl Quotas {
    /// Checks the property count of an image going from `before` to `after` properties.
    pub fn check_properties(&self, before: usize, after: usize) -> Result<()> {
        check_quota(
            "properties",
            "image_property_quota",
            self.properties,
            before,
            after,
        )
    }

    /// Checks the tag count of an image going from `before` to `after` tags.
    pub fn check_tags(&self, before: usize, after: usize) -> Result<()> {
        check_quota("tags", "image_tag_quota", self.tags, before, after)
    }

    /// Checks the member count of an image going from `before` to `after` live members.
    pub fn check_members(&self, before: usize, after: usize) -> Result<()> {
        check_quota("members", "image_member_quota", self.members, before, after)
    }
}

/// 413 naming the limit and its option when `after` exceeds `quota` and grows.
fn check_quota(what: &str, option: &str, quota: u64, before: usize, after: usize) -> Result<()> {
    let within = u64::try_from(after).is_ok_and(|n| n <= quota);
    if !within && after > before {
        return Err(Error::TooLarge(format!(
            "Too many image {what}: {after} given, {option} is {quota}"
        )));
    }
    Ok(())
}

/// A parsed listing request: filters, sort and page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    /// Exact-match filters on columns: (column, value). Columns are from a fixed set.
    pub equals: Vec<(&'static str, String)>,
    /// `size >= v`.
    pub size_min: Option<u64>,
    /// `size <= v`.
    pub size_max: Option<u64>,
    /// Live properties that must be present with these values.
    pub properties: Vec<(String, String)>,
    /// Visibility filter.
    pub public: PublicFilter,
    /// Only images created or updated at or after this stored timestamp.
    pub changes_since: Option<String>,
    /// A column of [`SORT_KEYS`].
    pub sort_key: &'static str,
    /// Ascending when true.
    pub sort_asc: bool,
    /// Page size (already clamped).
    pub limit: u64,
    /// Id of the last item of the previous page.
    pub marker: Option<String>,
    /// The v2 listing rules ([`query`]); `None` for v1 listings.
    pub v2: Option<query::V2Scope>,
    /// Tags that must all be on the image.
    pub tags: Vec<String>,
    /// `column IN (values)` filters (v2's `in:`). Columns are from a fixed set.
    pub any_of: Vec<(&'static str, Vec<String>)>,
    /// Time comparisons on `created_at` / `updated_at` (v2's `gt:` …).
    pub times: Vec<(&'static str, query::CmpOp, String)>,
    /// Further sort keys after `sort_key` (v2's repeated `sort_key`, `sort=`).
    pub then_by: Vec<(&'static str, bool)>,
}

/// Query parameters copied from the API to the registry (spec §5.1); others are dropped.
pub const LIST_PARAMS: [&str; 14] = [
    "name",
    "status",
    "container_format",
    "disk_format",
    "min_ram",
    "min_disk",
    "size_min",
    "size_max",
    "is_public",
    "changes-since",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
];

impl ListQuery {
    /// Parses listing parameters. Unknown parameters are ignored; invalid values of known
    /// ones are `BadRequest` naming the parameter. `is_public` is honoured for admins only.
    pub fn parse(
        pairs: &[(String, String)],
        ctx: &Context,
        limits: PageLimits,
    ) -> Result<ListQuery> {
        let mut q = ListQuery {
            sort_key: "created_at",
            sort_asc: false,
            limit: limits.default,
            ..ListQuery::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "name" | "status" | "container_format" | "disk_format" | "min_ram" | "min_disk" => {
                    let col = [
                        "name",
                        "status",
                        "container_format",
                        "disk_format",
                        "min_ram",
                        "min_disk",
                    ]
                    .into_iter()
                    .find(|c| c == key)
                    .unwrap_or("name");
                    if matches!(col, "min_ram" | "min_disk") {
                        crate::image::parse_count(col, value)?;
                    }
                    q.equals.push((col, value.clone()));
                }
                "size_min" => q.size_min = Some(crate::image::parse_count("size_min", value)?),
                "size_max" => q.size_max = Some(crate::image::parse_count("size_max", value)?),
                "is_public" if ctx.is_admin => {
                    q.public = match value.to_ascii_lowercase().as_str() {
                        "none" => PublicFilter::Any,
                        "true" | "1" => PublicFilter::VisibleToCaller,
                        "false" | "0" => PublicFilter::Private,
                        _ => {
                            return Err(Error::bad_request(
                                "is_public must be None, True, or False",
                            ));
                        }
                    }
                }
                "changes-since" => {
                    q.changes_since = Some(crate::timeutil::try_normalise(value).map_err(|why| {
                        Error::bad_request(format!(
                            "Invalid changes-since value '{value}': expected an ISO 8601 UTC time ({why})"
                        ))
                    })?)
                }
                "limit" => {
                    let n = value.parse::<u64>().map_err(|_| {
                        Error::bad_request("limit param must be a non-negative integer")
                    })?;
                    q.limit = n.min(limits.max);
                }
                "marker" => {
                    if value.is_empty() {
                        return Err(Error::bad_request("marker param must not be empty"));
                    }
                    q.marker = Some(value.clone())
                }
                "sort_key" => {
                    q.sort_key = SORT_KEYS.into_iter().find(|k| k == value).ok_or_else(|| {
                        Error::bad_request(format!(
                            "Unsupported sort_key. Acceptable values: {}",
                            SORT_KEYS.join(", ")
                        ))
                    })?
                }
                "sort_dir" => {
                    q.sort_asc = match value.as_str() {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            return Err(Error::bad_request(
                                "Unsupported sort_dir. Acceptable values: asc, desc",
                            ));
                        }
                    }
                }
                k if k.starts_with("property-") && k.len() > "property-".len() => {
                    q.properties
                        .push((k["property-".len()..].to_string(), value.clone()));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The query as URL parameters (for the remote registry client): a v2 query in the v2
    /// syntax ([`query`]), a v1 query in the v1 syntax.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        if let Some(scope) = &self.v2 {
            return self.v2_pairs(scope);
        }
        let mut v: Vec<(String, String)> = self
            .equals
            .iter()
            .map(|(k, val)| (k.to_string(), val.clone()))
            .collect();
        if let Some(n) = self.size_min {
            v.push(("size_min".into(), n.to_string()));
        }
        if let Some(n) = self.size_max {
            v.push(("size_max".into(), n.to_string()));
        }
        for (k, val) in &self.properties {
            v.push((format!("property-{k}"), val.clone()));
        }
        match self.public {
            PublicFilter::VisibleToCaller => {}
            PublicFilter::Private => v.push(("is_public".into(), "false".into())),
            PublicFilter::Any => v.push(("is_public".into(), "none".into())),
        }
        if let Some(t) = &self.changes_since {
            v.push(("changes-since".into(), t.clone()));
        }
        v.push(("sort_key".into(), self.sort_key.into()));
        v.push((
            "sort_dir".into(),
            if self.sort_asc { "asc" } else { "desc" }.into(),
        ));
        v.push(("limit".into(), self.limit.to_string()));
        if let Some(m) = &self.marker {
            v.push(("marker".into(), m.clone()));
        }
        v
    }
}

/// `can_share` of a member body: absent/null → None, else a boolean.
pub(crate) fn parse_can_share(member: &Value) -> Result<Option<bool>> {
    match member.get("can_share") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Error::bad_request(
            "Invalid value for 'can_share': must be a boolean",
        )),
    }
}

/// Parses the three body forms of replace-members (spec §5.8): `{"memberships": [...]}`,
/// a bare list, or one membership object.
pub fn parse_memberships(body: &Value) -> Result<Vec<MemberSpec>> {
    let list: Vec<&Value> = match body {
        Value::Object(o) if o.contains_key("memberships") => match &o["memberships"] {
            Value::Array(a) => a.iter().collect(),
            _ => return Err(Error::bad_request("'memberships' must be a list")),
        },
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) if o.contains_key("member_id") => vec![body],
        _ => {
            return Err(Error::bad_request(
                "Request body must contain 'memberships'",
            ));
        }
    };
    list.into_iter()
        .map(|m| {
            let member_id = m
                .get("member_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    Error::bad_request("Each membership needs a non-empty string 'member_id'")
                })?;
            Ok(MemberSpec {
                member_id: member_id.to_string(),
                can_share: parse_can_share(m)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::AuthOptions;

    fn pairs(s: &str) -> Vec<(String, String)> {
        crate::http::parse_query(s)
    }

    fn tenant() -> Context {
        Context::for_identity(
            None,
            None,
            Some("t".into()),
            vec![],
            &AuthOptions::default(),
        )
    }

    #[test]
    fn defaults() {
        let q = ListQuery::parse(&[], &tenant(), PageLimits::default()).unwrap_or_default();
        assert_eq!((q.sort_key, q.sort_asc, q.limit), ("created_at", false, 25));
    }

    #[test]
    fn filters_and_paging() {
        let q = ListQuery::parse(
            &pairs("name=a&size_min=1&size_max=9&property-os=linux&limit=5000&marker=m&sort_key=name&sort_dir=asc&bogus=1"),
            &tenant(),
            PageLimits::default(),
        )
        .unwrap_or_default();
        assert_eq!(q.equals, vec![("name", "a".to_string())]);
        assert_eq!((q.size_min, q.size_max), (Some(1), Some(9)));
        assert_eq!(q.properties, vec![("os".to_string(), "linux".to_string())]);
        assert_eq!(q.limit, 1000);
        assert_eq!(q.marker.as_deref(), Some("m"));
        assert!(q.sort_asc);
        let back = ListQuery::parse(&q.to_pairs(), &tenant(), PageLimits::default());
        assert_eq!(back.ok(), Some(q));
    }

    #[test]
    fn is_public_for_admins_only() {
        let admin = Context::noauth_admin(&AuthOptions::default());
        let parse = |s: &str, c: &Context| ListQuery::parse(&pairs(s), c, PageLimits::default());
        assert_eq!(
            parse("is_public=none", &admin).map(|q| q.public).ok(),
            Some(PublicFilter::Any)
        );
        assert_eq!(
            parse("is_public=False", &admin).map(|q| q.public).ok(),
            Some(PublicFilter::Private)
        );
        assert!(parse("is_public=maybe", &admin).is_err());
        assert_eq!(
            parse("is_public=false", &tenant()).map(|q| q.public).ok(),
            Some(PublicFilter::VisibleToCaller)
        );
    }

    #[test]
    fn quotas_refuse_growth_past_the_limit_only() {
        let q = Quotas {
            properties: 2,
            members: 1,
            tags: 1,
        };
        assert!(q.check_properties(0, 2).is_ok());
        let e = q.check_properties(2, 3).err();
        assert_eq!(e.as_ref().map(Error::status), Some(413));
        assert_eq!(
            e.map(|e| e.message()).as_deref(),
            Some("Too many image properties: 3 given, image_property_quota is 2")
        );
        // Already over a lowered quota: not growing is allowed, growing is not.
        assert!(q.check_properties(5, 5).is_ok());
        assert!(q.check_properties(5, 4).is_ok());
        assert!(q.check_properties(5, 6).is_err());
        let e = q.check_members(1, 2).err().map(|e| e.message());
        assert_eq!(
            e.as_deref(),
            Some("Too many image members: 2 given, image_member_quota is 1")
        );
        assert!(Quotas::default().check_members(0, 128).is_ok());
        assert!(Quotas::default().check_members(0, 129).is_err());
    }

    #[test]
    fn invalid_values_name_the_parameter() {
        for (s, needle) in [
            ("limit=-1", "limit"),
            ("limit=abc", "limit"),
            ("sort_key=owner", "sort_key"),
            ("sort_dir=up", "sort_dir"),
            ("size_min=x", "size_min"),
            ("min_ram=-2", "min_ram"),
            ("changes-since=yesterday", "changes-since"),
            (
                "changes-since=300000000000-01-01",
                "year must have four digits",
            ),
            ("changes-since=2011-02-30", "changes-since"),
            ("marker=", "marker"),
        ] {
            let err = ListQuery::parse(&pairs(s), &tenant(), PageLimits::default())
                .err()
                .map(|e| e.message())
                .unwrap_or_default();
            assert!(err.contains(needle), "{s}: {err}");
        }
    }

    #[test]
    fn membership_body_forms() {
        let wrapped =
            json!({"memberships": [{"member_id": "a", "can_share": true}, {"member_id": "b"}]});
        let specs = parse_memberships(&wrapped).unwrap_or_default();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].can_share, Some(true));
        assert_eq!(specs[1].can_share, None);
        let bare = json!([{"member_id": "a"}]);
        assert_eq!(parse_memberships(&bare).map(|v| v.len()).ok(), Some(1));
        let single = json!({"member_id": "a", "can_share": false});
        assert_eq!(
            parse_memberships(&single).ok(),
            Some(vec![MemberSpec {
                member_id: "a".into(),
                can_share: Some(false)
            }])
        );
        assert!(parse_memberships(&json!({"memberships": []})).is_ok_and(|v| v.is_empty()));
        for bad in [
            json!({}),
            json!({"memberships": "x"}),
            json!([{"member_id": ""}]),
            json!([{"member_id": 5}]),
            json!([{"member_id": "a", "can_share": "yes"}]),
        ] {
            assert!(parse_memberships(&bad).is_err(), "{bad} accepted");
        }
    }
}
