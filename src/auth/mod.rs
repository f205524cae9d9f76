//! Who is calling, and what they may do with an image (spec §7).
//!
//! [`Context`] is built per request by the [`ContextSource`] that `auth_strategy` names:
//! [`NoAuth`] reads the identity headers with the Diablo default-pipeline rules, and
//! [`keystone::Keystone`] validates the token against Keystone v3. A context carries the
//! rules of §7.3: visible, mutable, sharable. The registry applies them in its queries; the
//! API applies them before touching a store.

pub mod keystone;

use crate::config::AuthStrategy;
use crate::error::{Error, Result};
use crate::http::{Headers, Request};
use crate::image::{Image, Visibility};

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The token the caller sent, forwarded to a remote registry.
    pub auth_token: Option<String>,
    /// User id.
    pub user: Option<String>,
    /// Tenant (project) id.
    pub tenant: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Admins see and change everything.
    pub is_admin: bool,
    /// Anonymous read-only callers get 403 on every write.
    pub read_only: bool,
    /// Owner id is the tenant (default) or the user.
    pub owner_is_tenant: bool,
}

/// Builds the caller's context from a request; the auth strategy decides how.
pub trait ContextSource: Send + Sync {
    /// The context of this request, or an error (401/503) that answers it.
    fn context(&self, req: &Request<'_>) -> Result<Context>;
}

/// `auth_strategy = noauth`: the Diablo default-pipeline header rules.
pub struct NoAuth(pub AuthOptions);

impl ContextSource for NoAuth {
    fn context(&self, req: &Request<'_>) -> Result<Context> {
        Ok(Context::from_noauth_headers(&req.headers, &self.0))
    }
}

/// The context source named by `auth_strategy`. Under `keystone` the service token is
/// fetched in the background at once, so that bad credentials show in the log at start-up.
pub fn context_source(
    common: &crate::config::CommonOptions,
) -> Result<std::sync::Arc<dyn ContextSource>> {
    let opts = AuthOptions {
        admin_role: common.admin_role.clone(),
        owner_is_tenant: common.owner_is_tenant,
    };
    match common.auth_strategy {
        AuthStrategy::NoAuth => Ok(std::sync::Arc::new(NoAuth(opts))),
        AuthStrategy::Keystone => {
            let ks = std::sync::Arc::new(keystone::Keystone::new(
                common.keystone.clone(),
                opts,
                common.allow_anonymous_access,
            ));
            ks.warm_up();
            Ok(ks)
        }
    }
}

/// The `X-Identity-Status` value glance-api sends to a remote registry for an anonymous
/// (read-only) caller, which has no token to forward.
pub const ANONYMOUS_STATUS: &str = "Anonymous";

/// Options that shape contexts (from the config).
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// Role that makes a caller admin, compared case-insensitively.
    pub admin_role: String,
    /// Owner id = tenant (true, default) or user.
    pub owner_is_tenant: bool,
}

impl Default for AuthOptions {
    fn default() -> AuthOptions {
        AuthOptions {
            admin_role: "admin".into(),
            owner_is_tenant: true,
        }
    }
}

impl Context {
    /// The context of a caller without a token under `noauth`: admin with no tenant.
    pub fn noauth_admin(opts: &AuthOptions) -> Context {
        Context {
            is_admin: true,
            owner_is_tenant: opts.owner_is_tenant,
            ..Context::default()
        }
    }

    /// An anonymous caller under `keystone` with `allow_anonymous_access`: no identity,
    /// not admin, read-only (public and null-owner images only).
    pub fn anonymous(opts: &AuthOptions) -> Context {
        Context {
            read_only: true,
            owner_is_tenant: opts.owner_is_tenant,
            ..Context::default()
        }
    }

    /// The Diablo default-pipeline rules (DECISIONS.md "auth modes"): no token, or a token
    /// without `X-Identity-Status: Confirmed` → admin without tenant; a confirmed token →
    /// identity from `X-User`/`X-User-Id`, `X-Tenant`/`X-Project-Id`/`X-Tenant-Id`,
    /// `X-Role`/`X-Roles`.
    ///
    /// One addition, which can only lower privileges: no token together with
    /// `X-Identity-Status: Anonymous` (what glance-api forwards for an anonymous caller, see
    /// [`Context::forward_headers`]) → anonymous and read-only.
    pub fn from_noauth_headers(headers: &Headers, opts: &AuthOptions) -> Context {
        let token = headers
            .get("x-auth-token")
            .or_else(|| headers.get("x-storage-token"))
            .map(str::to_string);
        let status = headers.get("x-identity-status").map(str::trim);
        let confirmed = status.is_some_and(|s| s.eq_ignore_ascii_case("confirmed"));
        if token.is_none() && status.is_some_and(|s| s.eq_ignore_ascii_case(ANONYMOUS_STATUS)) {
            return Context::anonymous(opts);
        }
        if token.is_none() || !confirmed {
            let mut ctx = Context::noauth_admin(opts);
            ctx.auth_token = token;
            return ctx;
        }
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| headers.get(n))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let roles: Vec<String> = ["x-roles", "x-role"]
            .iter()
            .find_map(|n| headers.get(n))
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Context::for_identity(
            token,
            first(&["x-user-id", "x-user"]),
            first(&["x-project-id", "x-tenant-id", "x-tenant"]),
            roles,
            opts,
        )
    }

    /// A context for a known identity (`admin` decided by `admin_role`).
    pub fn for_identity(
        token: Option<String>,
        user: Option<String>,
        tenant: Option<String>,
        roles: Vec<String>,
        opts: &AuthOptions,
    ) -> Context {
        let is_admin = roles
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&opts.admin_role));
        Context {
            auth_token: token,
            user,
            tenant,
            roles,
            is_admin,
            read_only: false,
            owner_is_tenant: opts.owner_is_tenant,
        }
    }

    /// The caller's owner id: the tenant, or the user when `owner_is_tenant = False`.
    pub fn owner(&self) -> Option<&str> {
        if self.owner_is_tenant {
            self.tenant.as_deref()
        } else {
            self.user.as_deref()
        }
    }

    /// Visible: admin, or owner null, or public or community, or own, or a live membership
    /// (the caller checks that memberships count: on `shared` images only).
    pub fn can_see(&self, image: &Image, is_member: bool) -> bool {
        self.is_admin
            || image.owner.is_none()
            || matches!(image.visibility, Visibility::Public | Visibility::Community)
            || (self.owner().is_some() && self.owner() == image.owner.as_deref())
            || is_member
    }

    /// 403 for a read-only (anonymous) caller, before any write of either images API.
    pub fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::Forbidden("Read-only access".into()));
        }
        Ok(())
    }

    /// Mutable: admin, or both owners set and equal. Read-only contexts never mutate.
    pub fn can_modify(&self, image: &Image) -> bool {
        if self.read_only {
            return false;
        }
        if self.is_admin {
            return true;
        }
        match (self.owner(), image.owner.as_deref()) {
            (Some(me), Some(owner)) => me == owner,
            _ => false,
        }
    }

    /// Sharable: needs an owner id; admin or owner, or a member with `can_share`.
    pub fn can_share(&self, image: &Image, member_can_share: bool) -> bool {
        if self.read_only || self.owner().is_none() {
            return false;
        }
        self.is_admin || self.owner() == image.owner.as_deref() || member_can_share
    }

    /// Whether the caller may create images (the read-only check comes first, elsewhere):
    /// admins always; anyone else needs an owner id, i.e. a project (or a user when
    /// `owner_is_tenant = False`). Without one the image would get no owner, which makes it
    /// readable by every tenant and changeable by none but admins (spec §7.3): an unscoped
    /// or domain-scoped Keystone token, or a confirmed identity without a tenant, must not
    /// be able to do that.
    pub fn check_can_create(&self) -> Result<()> {
        if self.is_admin || self.owner().is_some() {
            return Ok(());
        }
        Err(Error::Forbidden(if self.owner_is_tenant {
            "Creating images requires a project-scoped token: the caller has no project".into()
        } else {
            "Creating images requires an authenticated user".into()
        }))
    }

    /// Whether the caller may list the images shared with `member`
    /// (`/shared-images/<member>`): that member itself (its owner id equals `member`) or an
    /// admin. Diablo let anyone list anyone's; that tells a stranger which private images
    /// a tenant can use.
    pub fn can_list_shared_images(&self, member: &str) -> bool {
        self.is_admin || self.owner() == Some(member)
    }

    /// The identity headers sent to a remote registry (DECISIONS.md: identity forwarding):
    /// the token and, when the caller has an identity, `X-Identity-Status: Confirmed` with
    /// `X-User-Id`, `X-Tenant` and `X-Roles`. A registry under `noauth` reads them as the API
    /// did; one under `keystone` validates the token itself. An anonymous read-only caller
    /// has no token: it is sent as `X-Identity-Status: Anonymous`, so that a `noauth`
    /// registry does not take it for its no-token admin (a `keystone` registry sees no token
    /// and applies its own `allow_anonymous_access`).
    pub fn forward_headers(&self) -> Vec<(String, String)> {
        let mut h = Vec::new();
        let Some(token) = &self.auth_token else {
            if self.read_only {
                h.push(("X-Identity-Status".into(), ANONYMOUS_STATUS.into()));
            }
            return h;
        };
        h.push(("X-Auth-Token".into(), token.clone()));
        if self.user.is_none() && self.tenant.is_none() && self.roles.is_empty() {
            return h;
        }
        h.push(("X-Identity-Status".into(), "Confirmed".into()));
        if let Some(u) = &self.user {
            h.push(("X-User-Id".into(), u.clone()));
        }
        if let Some(t) = &self.tenant {
            h.push(("X-Tenant".into(), t.clone()));
        }
        h.push(("X-Roles".into(), self.roles.join(",")));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in pairs {
            h.push(*n, *v);
        }
        h
    }

    #[test]
    fn no_token_is_admin_without_tenant() {
        let ctx = Context::from_noauth_headers(&headers(&[]), &AuthOptions::default());
        assert!(ctx.is_admin && ctx.tenant.is_none() && !ctx.read_only);
    }

    #[test]
    fn unconfirmed_token_is_ignored() {
        let ctx = Context::from_noauth_headers(
            &headers(&[("X-Auth-Token", "t"), ("X-Tenant", "t1")]),
            &AuthOptions::default(),
        );
        assert!(ctx.is_admin && ctx.tenant.is_none());
        assert_eq!(ctx.auth_token.as_deref(), Some("t"));
    }

    #[test]
    fn confirmed_identity_old_and_new_names() {
        let opts = AuthOptions::default();
        let old = Context::from_noauth_headers(
            &headers(&[
                ("X-Auth-Token", "t"),
                ("X-Identity-Status", "Confirmed"),
                ("X-User", "u1"),
                ("X-Tenant", "t1"),
                ("X-Role", "Member, Admin"),
            ]),
            &opts,
        );
        assert_eq!(old.tenant.as_deref(), Some("t1"));
        assert_eq!(old.user.as_deref(), Some("u1"));
        assert!(old.is_admin, "Admin matches admin_role case-insensitively");
        let new = Context::from_noauth_headers(
            &headers(&[
                ("X-Auth-Token", "t"),
                ("X-Identity-Status", "Confirmed"),
                ("X-User-Id", "u2"),
                ("X-Project-Id", "p2"),
                ("X-Roles", "member,reader"),
            ]),
            &opts,
        );
        assert_eq!(new.owner(), Some("p2"));
        assert!(!new.is_admin);
        assert_eq!(new.roles, vec!["member", "reader"]);
    }

    #[test]
    fn visibility_rules() {
        let opts = AuthOptions::default();
        let t1 = Context::for_identity(None, Some("u".into()), Some("t1".into()), vec![], &opts);
        let mut img = Image::new("i".into());
        img.owner = Some("t2".into());
        assert!(!t1.can_see(&img, false));
        assert!(t1.can_see(&img, true));
        img.visibility = Visibility::Public;
        assert!(t1.can_see(&img, false));
        assert!(!t1.can_modify(&img));
        assert!(!t1.can_share(&img, false));
        assert!(t1.can_share(&img, true));
        img.owner = None;
        img.visibility = Visibility::Private;
        assert!(t1.can_see(&img, false));
        assert!(
            !t1.can_modify(&img),
            "null-owner images are not mutable by tenants"
        );
        let admin = Context::noauth_admin(&opts);
        assert!(admin.can_modify(&img));
        assert!(
            !admin.can_share(&img, false),
            "admin needs a tenant to share"
        );
        let mut ro = t1.clone();
        ro.read_only = true;
        img.owner = Some("t1".into());
        assert!(!ro.can_modify(&img));
    }

    #[test]
    fn anonymous_status_without_token_is_read_only() {
        let opts = AuthOptions::default();
        let ctx = Context::from_noauth_headers(
            &headers(&[("X-Identity-Status", "Anonymous"), ("X-Tenant", "t1")]),
            &opts,
        );
        assert_eq!(ctx, Context::anonymous(&opts));
        assert!(ctx.read_only && !ctx.is_admin && ctx.owner().is_none());
        // With a token, a status other than Confirmed is ignored as before.
        let ctx = Context::from_noauth_headers(
            &headers(&[("X-Auth-Token", "t"), ("X-Identity-Status", "Anonymous")]),
            &opts,
        );
        assert!(ctx.is_admin && !ctx.read_only);
    }

    #[test]
    fn forwarded_headers_round_trip_through_noauth() {
        let opts = AuthOptions::default();
        let fwd = |ctx: &Context| {
            let mut h = Headers::default();
            for (n, v) in ctx.forward_headers() {
                h.push(n, v);
            }
            Context::from_noauth_headers(&h, &opts)
        };
        let user = Context::for_identity(
            Some("tok".into()),
            Some("u1".into()),
            Some("p1".into()),
            vec!["member".into(), "Admin".into()],
            &opts,
        );
        assert_eq!(fwd(&user), user);
        let anon = Context::anonymous(&opts);
        assert_eq!(fwd(&anon), anon);
        assert!(
            anon.forward_headers()
                .iter()
                .all(|(n, _)| n != "X-Auth-Token")
        );
        let admin = Context::noauth_admin(&opts);
        assert_eq!(fwd(&admin), admin);
    }

    #[test]
    fn creating_needs_an_owner_id_unless_admin() {
        let opts = AuthOptions::default();
        let scoped = Context::for_identity(None, Some("u".into()), Some("p".into()), vec![], &opts);
        assert!(scoped.check_can_create().is_ok());
        assert!(Context::noauth_admin(&opts).check_can_create().is_ok());
        let unscoped = Context::for_identity(None, Some("u".into()), None, vec![], &opts);
        let e = unscoped.check_can_create().err();
        assert_eq!(e.as_ref().map(Error::status), Some(403));
        assert!(
            e.map(|e| e.message())
                .is_some_and(|m| m.contains("project-scoped token")),
        );
        let by_user = AuthOptions {
            owner_is_tenant: false,
            ..AuthOptions::default()
        };
        let user = Context::for_identity(None, Some("u".into()), None, vec![], &by_user);
        assert!(user.check_can_create().is_ok());
    }

    #[test]
    fn shared_images_are_listed_for_the_member_or_an_admin() {
        let opts = AuthOptions::default();
        let t1 = Context::for_identity(None, Some("u".into()), Some("t1".into()), vec![], &opts);
        assert!(t1.can_list_shared_images("t1"));
        assert!(!t1.can_list_shared_images("t2"));
        assert!(Context::noauth_admin(&opts).can_list_shared_images("t2"));
        assert!(!Context::anonymous(&opts).can_list_shared_images(""));
    }

    #[test]
    fn owner_is_user_when_configured() {
        let opts = AuthOptions {
            owner_is_tenant: false,
            ..AuthOptions::default()
        };
        let c = Context::for_identity(None, Some("u".into()), Some("t".into()), vec![], &opts);
        assert_eq!(c.owner(), Some("u"));
    }
}
