# Debian image with compilers, liburing, libfuse3 and the package's exact Python environment
# (requirements.lock, hashes checked); runs JupyterLab on port 8888. Build and run: README
# "In a container". io_uring needs a seccomp profile that allows it (Docker's default blocks it;
# ktux then exits with a message saying so); the testbed (CPU thief, disk model, cgroups) also
# needs --privileged --device /dev/fuse.
#
# The base is pinned by digest: debian:12 (bookworm-20261005). The digest was taken from public
# pins of that tag, not read from the registry here (none reachable): check or renew it with
#   skopeo inspect docker://docker.io/library/debian:12 --format '{{.Digest}}'
# (or `docker buildx imagetools inspect debian:12`) and build with --build-arg BASE=debian:12@sha256:...
ARG BASE=docker.io/library/debian:12@sha256:2c037a04925515fdd6ea85ea14a682d0e79931f5e9f5d07b6dbfc6ba12f9e858
FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc make pkg-config liburing-dev zlib1g-dev libfuse3-dev fuse3 nginx-light wrk curl \
        clang libclang-rt-14-dev openssh-server openssh-client \
        python3 python3-venv python3-pip procps iproute2 git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# make inside the image uses this environment instead of building a .venv (Makefile: VENV).
ENV VENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /opt/ukweb
# The lock first: the dependency layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python3 -m venv $VENV && $VENV/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
# make build first: the venv stamp must be newer than the .stamp-system it depends on.
RUN $VENV/bin/pip install --no-cache-dir --no-deps -e . \
    && make build kernel \
    && touch $VENV/.installed
EXPOSE 8888
CMD ["make", "lab", "LAB_IP=0.0.0.0"]
