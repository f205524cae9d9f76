# %preun of glance-rs ($1 = 0 on erase, 1 on upgrade): on erase, stop and disable the units.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now glance-api.service glance-registry.service \
            glance-scrubber.timer glance-scrubber.service glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer \
            glance-cache-prefetcher.service glance-cache-pruner.service glance-cache-reaper.service >/dev/null 2>&1 || :
    else
        systemctl --no-reload disable glance-api.service glance-registry.service \
            glance-scrubber.timer glance-cache-prefetcher.timer glance-cache-pruner.timer glance-cache-reaper.timer >/dev/null 2>&1 || :
    fi
fi
exit 0
