# %post of glance-rs ($1 = 1 on installation, 2 on upgrade): the directories the servers
# write to (ProtectSystem=strict in the units), the database migrated as glance, then the
# units enabled (not started) on installation. On upgrade the old package's %postun
# restarts the services that are running.
install -d -o glance -g glance -m 0750 /var/lib/glance /var/lib/glance/images /var/log/glance
if [ -f /etc/glance/glance-registry.conf ]; then
    runuser -u glance -- /usr/bin/glance-manage \
        --config-file /etc/glance/glance-registry.conf db_sync || \
        echo "glance-rs: 'glance-manage db_sync' failed: fix the database or sql_connection" \
            "in /etc/glance/glance-registry.conf and run it again as user glance" >&2
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload enable glance-api.service glance-registry.service \
        glance-scrubber.timer glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer >/dev/null 2>&1 || :
fi
exit 0
