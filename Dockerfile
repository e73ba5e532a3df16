# Debian image with compilers, liburing, libfuse3 and the package; runs JupyterLab on port 8888.
# io_uring needs a seccomp profile that allows it: docker run --security-opt seccomp=unconfined ...
# (Docker's default profile blocks io_uring; ktux then exits with a message saying so). The
# testbed (CPU thief, disk model, cgroups) also needs --privileged --device /dev/fuse.
FROM debian:12
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc make pkg-config liburing-dev zlib1g-dev libfuse3-dev fuse3 nginx-light wrk curl \
        clang libclang-rt-14-dev openssh-server openssh-client \
        python3 python3-venv python3-pip procps iproute2 git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ukweb
COPY . .
# Same Python dependencies as pyproject.toml and environment.yml (tests/test_packaging.py checks).
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir \
        "numpy>=1.24" "pandas>=2.0" "pyarrow>=12" "matplotlib>=3.7" "scipy>=1.10" \
        "psutil>=5.9" "tqdm>=4.65" "requests>=2.31" "pyyaml>=6.0" "asyncssh>=2.14" "papermill>=2.4" \
        "nbformat>=5.9" "nbconvert>=7.0" "ipykernel>=6.25" \
        "pytest>=7.4" "pytest-timeout>=2.1" "ruff>=0.1" "jupyterlab>=4.0" \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps -e . \
    && make build
ENV PATH=/opt/venv/bin:$PATH
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--allow-root", "--no-browser", "notebooks/"]
