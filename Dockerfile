# mqnode's container image: the stripped binary, exactly the shared libraries it loads, dash
# for the entrypoint, and nothing else (about 15 MB). No registry image is needed: the root
# filesystem is assembled from the release build and this Debian host's own libraries.
#
#   ./build.sh image        # ./build.sh build, packaging/image/rootfs.sh, podman build
#
# or by hand (docker works the same way; --format docker keeps the HEALTHCHECK with podman):
#   ./build.sh build && packaging/image/rootfs.sh build/app/mqnode build/image-root
#   podman build --format docker -t mqnode .
#
# Environment, ports, volumes and capabilities: docs/deploy.md.
#
# Why not a bare `docker build .` / `podman build .`: it needs build/image-root (above) first.
# A multi-stage Dockerfile compiling inside the build would start FROM a Debian image pulled
# from a registry, and this project's machines reach no registry (only Debian's package
# mirrors): the base layer must come from the host's own packages. `./build.sh image` is
# therefore the entry point; a bare build fails at the COPY below naming the missing
# build/image-root.
FROM scratch
COPY build/image-root/ /
# The data dir belongs to the unprivileged user the node runs as.
COPY --chown=999:999 packaging/image/data-dir/ /var/lib/mqnode/
USER 999:999
ENV MQNODE_ROLE=disc
# 5672 AMQP, 15672 management API and /metrics, 25672 cluster links, 5670 the lb's AMQP
# frontend and 8080 its stats page (conf/seed; keep them in step there). The vip role uses
# VRRP (IP protocol 112) on the host's network, not a port.
EXPOSE 5672 15672 25672 5670 8080
VOLUME /var/lib/mqnode
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/mqnode-entrypoint", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mqnode-entrypoint"]
