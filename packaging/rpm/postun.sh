# %postun of glance-rs ($1 = 0 on erase, 1 on upgrade). On upgrade, restart the services
# that are running, now on the new binaries. RPM has no purge: the database, image data and
# logs under /var/lib/glance and /var/log/glance are left in place, as are modified configs
# (saved as .rpmsave).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart glance-api.service glance-registry.service \
            glance-scrubber.timer glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rmdir /etc/glance 2>/dev/null || :
fi
exit 0
