// Load test of the serving reads of the llmops REST API (k6).
//
//   k6 run --env BASE_URL=http://127.0.0.1:8080 --env TOKEN="$(cat .llmops/api-token)" \
//       tests/load/k6_serving_test.js
//
// At a constant arrival rate (RATE requests/s, default 20, for DURATION seconds, default
// 30) it sends, in turn: the endpoint list (filtered by a random environment, or by
// environment and status), one endpoint's detail and one endpoint's health
// (GET /serve/{name}/health), for the endpoints the list returned in setup().
// TOKEN is a bearer token with serving:read (llmops up writes one per role under
// LLMOPS_HOME/tokens/). Thresholds: no failed request, every check passed, p99 under
// P99_MS (default 500) ms; k6 exits non-zero when one is crossed.
import http from 'k6/http';
import { check, fail } from 'k6';

const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:8080') + '/llm-ops/v1';
const PARAMS = {headers: {Authorization: `Bearer ${__ENV.TOKEN || ''}`}, timeout: '10s'};

export const options = {
  discardResponseBodies: false,
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    serving: {
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
  const res = http.get(`${BASE}/serving/endpoints?limit=100`, PARAMS);
  if (!ok(res)) {
    fail(`listing endpoints at ${BASE} answered ${res.status}: ${res.body}`);
  }
  const endpoints = res.json('data.items').map((e) => ({id: e.id, name: e.name,
                                                         environment: e.environment}));
  if (endpoints.length === 0) {
    fail('no serving endpoints to read: reconcile a specs repo first');
  }
  return {endpoints};
}

export default function (data) {
  const endpoint = data.endpoints[Math.floor(Math.random() * data.endpoints.length)];
  switch (__ITER % 4) {
    case 0:
      ok(http.get(`${BASE}/serving/endpoints?environment=${endpoint.environment}`, PARAMS));
      break;
    case 1:
      ok(http.get(`${BASE}/serving/endpoints?environment=${endpoint.environment}` +
                  '&status=notobserved&limit=20', PARAMS));
      break;
    case 2:
      ok(http.get(`${BASE}/serving/endpoints/${endpoint.id}`, PARAMS));
      break;
    default:
      ok(http.get(`${BASE}/serve/${endpoint.name}/health?environment=${endpoint.environment}`,
                  PARAMS));
  }
}
