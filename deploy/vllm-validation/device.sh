#!/usr/bin/env bash
# On the GPU host (device tool), from the repo root. Steps, one device call each, back to back:
#   device.sh recv          move the carried .devcarry/part.* (and .devcarry/extra/*.whl) to /tmp/vparts (per part)
#   device.sh install       unpack vLLM and its wheels into /tmp/site, check the import
#   device.sh launch PLAN   start PLAN (a file of lines "NAME ARGS..."; auto: by GPU) as a detached job writing /tmp/vr
#   device.sh wait SECONDS  wait for the job (or SECONDS), print its log, pack /tmp/vr into $OUT
set -uo pipefail
cmd=${1:-}; shift || true
export VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 VLLM_CONFIGURE_LOGGING=1
case "$cmd" in
recv)
  mkdir -p /tmp/vparts/extra
  for f in .devcarry/part.* .devcarry/extra/*.whl; do [ -e "$f" ] || continue
    case "$f" in *.whl) mv "$f" /tmp/vparts/extra/ ;; *) mv "$f" /tmp/vparts/ ;; esac; done
  ls -la /tmp/vparts /tmp/vparts/extra ;;
install)
  set -e
  mkdir -p /tmp/site /tmp/vb && cat /tmp/vparts/part.* | tar xf - -C /tmp/vb
  python3 - <<'PY'
import lzma, tarfile
with lzma.open("/tmp/vb/vllm-slim.tar.xz") as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
    tf.extractall("/tmp/site")
PY
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/vb/need/*.whl
  # wheels carried beside the parts (.devcarry/extra), e.g. one the GPU image stopped shipping
  if ls /tmp/vparts/extra/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/vparts/extra/*.whl
  fi
  python3 -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"
  nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
launch)
  plan=$1
  # one engine at a time: a second job would fight the first for GPU memory and overwrite its log
  if pgrep -f "bash /tmp/vr/job.sh" >/dev/null; then echo "a job is still running (device.sh wait)"; exit 3; fi
  if [ "$plan" = auto ]; then  # the plan for the GPU that came (a call may get an H100 or an H200)
    case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
      *H200*) plan=planner/profile/vllm_plans/h200.txt ;;
      *) plan=planner/profile/vllm_plans/h100-next.txt ;;
    esac
  fi
  echo "plan: $plan"; mkdir -p /tmp/vr; cp "$plan" /tmp/vr/plan.txt; cp -r planner /tmp/vr/planner
  cat > /tmp/vr/job.sh <<'JOB'
cd /tmp/vr
while read -r name args; do
  [ -z "$name" ] && continue; case "$name" in \#*) continue;; esac
  echo "=== $name $(date +%T)"
  if [ "$name" = attention ]; then python3 -m planner.profile.vllm_run --attention --out /tmp/vr/$name
  else python3 -m planner.profile.vllm_run $args --out /tmp/vr/$name; fi
  echo "=== $name rc=$? $(date +%T)"
done < plan.txt
echo ALLDONE
JOB
  PYTHONPATH=/tmp/site:/tmp/vr setsid nohup bash /tmp/vr/job.sh > /tmp/vr/log 2>&1 < /dev/null &
  sleep 20; tail -5 /tmp/vr/log ;;
wait)
  secs=${1:-60}; end=$((SECONDS + secs))
  while [ $SECONDS -lt $end ] && ! grep -q ALLDONE /tmp/vr/log; do sleep 5; done
  grep -E "^\[|^===|Error|error" /tmp/vr/log | tail -40
  (cd /tmp/vr && tar czf - $(ls -d */ 2>/dev/null | grep -v planner) plan.txt 2>/dev/null | split -b 15m -d - "$OUT/vr.tgz.")
  tail -c 200000 /tmp/vr/log > "$OUT/log.txt"; ls -la "$OUT" ;;
*) echo "unknown step: $cmd"; exit 2 ;;
esac
