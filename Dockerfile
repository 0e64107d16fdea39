# One image for the store, Flower and the CPU worker of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, the CPU build: the package's torch range is then met and pulls no CUDA libraries.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY cis490_train ./cis490_train
# The CPU flavour of xgboost (`xgboost-cpu`); a GPU image would take `.[gpu]` instead, never both.
RUN pip install '.[cpu]' && rm -rf /src

RUN useradd --system --create-home --home-dir /home/cis490 --shell /usr/sbin/nologin cis490 \
    && mkdir -p /store /data /work \
    && chown cis490:cis490 /store /data /work
USER cis490
WORKDIR /home/cis490
ENV CIS490_STORE_ROOT=/store \
    CIS490_DATA_DIR=/data \
    CIS490_WORK_DIR=/work

CMD ["cis490-train", "--help"]
