// Load test of the training reads of the llmops REST API (k6).
//
//   k6 run --env BASE_URL=http://127.0.0.1:8080 --env TOKEN="$(cat .llmops/api-token)" \
//       tests/load/k6_training_test.js
//
// At a constant arrival rate (RATE requests/s, default 20, for DURATION seconds, default
// 30) it sends, in turn: the training job list (all, then by a job's environment), one
// job's detail, and the base model's catalog entry, for the jobs the list returned in
// setup(). TOKEN is a bearer token with training:read and catalog:read. Thresholds: no
// failed request, every check passed, p99 under P99_MS (default 500) ms; k6 exits
// non-zero when one is crossed.
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:8080') + '/llm-ops/v1';
const PARAMS = {headers: {Authorization: `Bearer ${__ENV.TOKEN || ''}`}, timeout: '10s'};

export const options = {
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    training: {
      executor: 'constant-arrival-rate', rate: Number(__ENV.RATE || 20), timeUnit: '1s',
      duration: `${__ENV.DURATION || 30}s`, preAllocatedVUs: 20, maxVUs: 200,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    http_req_duration: [`p(99)<${__ENV.P99_MS || 500}`],
  },
};

function ok(res) {
  return check(res, {
    'status 200': (r) => r.status === 200,
    'envelope success': (r) => r.json('status') === 'success',
  });
}

export function setup() {
  const res = http.get(`${BASE}/training/jobs?limit=100`, PARAMS);
  if (!ok(res)) {
    fail(`listing training jobs at ${BASE} answered ${res.status}: ${res.body}`);
  }
  const jobs = res.json('data.items').map((j) => ({id: j.id, environment: j.environment,
                                                   model: j.baseModel.id}));
  if (jobs.length === 0) {
    fail('no training jobs to read: reconcile a specs repo first');
  }
  return {jobs};
}

export default function (data) {
  const job = data.jobs[Math.floor(Math.random() * data.jobs.length)];
  switch (__ITER % 4) {
    case 0:
      ok(http.get(`${BASE}/training/jobs`, PARAMS));
      break;
    case 1:
      ok(http.get(`${BASE}/training/jobs?environment=${job.environment}`, PARAMS));
      break;
    case 2:
      ok(http.get(`${BASE}/training/jobs/${job.id}`, PARAMS));
      break;
    default:
      ok(http.get(`${BASE}/catalog/models/${job.model}`, PARAMS));
  }
}
