FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY console ./console
RUN pip install --no-cache-dir . && useradd --system jifen
USER jifen
# One image, every service: pick it with the command, e.g.
#   uvicorn services.rewards_ledger.main:app --host 0.0.0.0 --port 8003
CMD ["uvicorn", "services.behavior_sensor.main:app", "--host", "0.0.0.0", "--port", "8001", "--timeout-keep-alive", "75"]
