# %pre of glance-rs: the glance system user, before the files it owns are installed.
getent group glance >/dev/null || groupadd -r glance
getent passwd glance >/dev/null || \
    useradd -r -g glance -d /var/lib/glance -s /sbin/nologin \
        -c "OpenStack Image Service" glance
exit 0
