# The `vigil` image of docker-compose.yml: the binary, the detection rules and the example
# configs. The Rust version is the one rust-toolchain.toml pins (the build would otherwise try to
# download that toolchain).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vigil

FROM debian:bookworm-slim
# openssl: docker-compose.yml's `secrets` one-shot generates the audit sink's signing key with it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 openssl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
# Relative paths (the correlator's default `rules_dir = "rules"`) resolve here.
WORKDIR /etc/vigil
COPY rules/ /etc/vigil/rules/
COPY config/ /etc/vigil/config/
ENTRYPOINT ["vigil"]
