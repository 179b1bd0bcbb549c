#!/bin/bash
# If HAProxy's stats page does not answer, try to restart HAProxy once; if it still does
# not answer, stop keepalived so the VIP moves to the backup.
if ! curl -s -o /dev/null http://127.0.0.1:80/haproxy -u admin:123456; then
    systemctl restart haproxy
    sleep 2
    if ! curl -s -o /dev/null http://127.0.0.1:80/haproxy -u admin:123456; then
        systemctl stop keepalived
    fi
fi
