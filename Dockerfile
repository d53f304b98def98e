# One image, every service and the operator's CLI; pick the process with the command, e.g.
#   uvicorn services.rewards_ledger.main:app --host 0.0.0.0 --port 8003
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/out" jifen:local jifen init --env-file /out/.env
# Runtime dependencies only, exactly as pinned (with hashes) in requirements.lock: neither the
# test tools nor the embedded PostgreSQL, broker and Valkey of `make run` (the `embedded` extra).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY services ./services
COPY console ./console
COPY cli ./cli
# The package itself (its dependencies are already there) gives the `jifen` command.
RUN pip install --no-deps . \
    && groupadd --system --gid 10001 jifen \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin jifen
# A numeric user, so Kubernetes can check runAsNonRoot; nothing is written outside /tmp, so
# the root filesystem can be mounted read-only.
USER 10001:10001
EXPOSE 8000-8007
CMD ["uvicorn", "services.behavior_sensor.main:app", "--host", "0.0.0.0", "--port", "8001", "--timeout-keep-alive", "75"]
