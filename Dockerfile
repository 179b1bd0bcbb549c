# Built with the README's own set-up step (./build.sh build), so image and README agree.
FROM debian:bookworm AS build
WORKDIR /src
COPY . .
RUN ./build.sh build

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libfmt9 libssl3 libsqlite3-0 libmnl0 libhttp-parser2.9 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/app/mqnode /usr/local/bin/mqnode
COPY conf/mqnode.json /etc/mqnode/mqnode.json.example
EXPOSE 5672
VOLUME /var/lib/mqnode
ENTRYPOINT ["/usr/local/bin/mqnode"]
CMD ["--role=disc"]
