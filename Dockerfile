#   docker build -t printbell .
#   docker run -p 8080:8080 -v printbell-data:/data \
#     -v "$PWD/notifier.toml:/etc/printbell/notifier.toml:ro" \
#     -e SLACK_WEBHOOK_URL=https://hooks.slack.com/services/... printbell
#
# The store (SQLite) is /data/printbell.db: `store.path = "printbell.db"` is relative to the
# working directory, which is /data. Nothing else is written, so `--read-only` works.

# ---- build -----------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# The whole repository (less what .dockerignore drops): besides src/, Cargo needs every
# target the manifest declares (benches/), and src/samples.rs embeds tests/fixtures/.
COPY . .
RUN cargo build --release --locked --bin printbell \
 && install -D -m 0755 target/release/printbell /out/printbell \
 && mkdir -p /out/data

# ---- run -------------------------------------------------------------------------------
# glibc + libgcc only: TLS is rustls with bundled roots, SQLite is compiled in.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/printbell /usr/local/bin/printbell
COPY notifier.toml /etc/printbell/notifier.toml
# An empty /data owned by the nonroot user (65532): a new named volume copies this ownership.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME /data
ENV PRINTBELL_CONFIG=/etc/printbell/notifier.toml \
    PRINTBELL_LISTEN=0.0.0.0:8080 \
    SQLITE_TMPDIR=/data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=6s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/printbell", "healthcheck"]
# serve stops within ~15 s of SIGTERM (5 s for open requests, 10 s for in-flight posts);
# run with `--stop-timeout 20` to let it finish every time.
ENTRYPOINT ["/usr/local/bin/printbell"]
CMD ["serve"]
