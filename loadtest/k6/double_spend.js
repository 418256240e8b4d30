// double_spend.js: many clients try to withdraw the same account's whole
// balance at the same moment. Exactly one transfer may succeed (201); every
// other must be refused with 422 insufficient-funds, and the account must end
// at 0.0000. The thresholds make k6 exit non-zero when that does not hold.
//
//   BASE_URL  daybook's address (default http://127.0.0.1:8080)
//   VUS       concurrent withdrawals (default 100)
//   AMOUNT    the balance funded and then withdrawn (default 100.0000)
//   RUN_ID    prefix of every name and idempotency key (default: the start time)
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const VUS = parseInt(__ENV.VUS || '100', 10);
const AMOUNT = __ENV.AMOUNT || '100.0000';
const RUN_ID = __ENV.RUN_ID || `${Date.now()}`;
// How long after setup() every VU waits before firing, so that all of them
// send within a few milliseconds of each other rather than as they start.
const START_DELAY_MS = 1000;

const succeeded = new Counter('transfers_succeeded');
const insufficient = new Counter('transfers_insufficient_funds');
const other = new Counter('transfers_other');
const balanceOK = new Counter('final_balance_ok');

export const options = {
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    double_spend: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: '60s',
    },
  },
  thresholds: {
    transfers_succeeded: ['count==1'],
    transfers_insufficient_funds: [`count==${VUS - 1}`],
    transfers_other: ['count==0'],
    final_balance_ok: ['count==1'],
    // 201 and 422 are the expected answers (see responseCallback below);
    // anything else (5xx, 409, a timeout) fails the run here as well.
    http_req_failed: ['rate==0'],
  },
};

// API_KEY (ledger:read and ledger:write) is sent when set; a fresh loopback
// instance with no key needs none.
const json = { headers: Object.assign({ 'Content-Type': 'application/json' },
  __ENV.API_KEY ? { Authorization: `Bearer ${__ENV.API_KEY}` } : {}) };

function createAccount(name, allowNegative) {
  const res = http.post(`${BASE_URL}/accounts`,
    JSON.stringify({ name: `k6-${RUN_ID}-${name}`, currency: 'USD', allow_negative: allowNegative }), json);
  if (res.status !== 201) fail(`POST /accounts ${name}: ${res.status} ${res.body}`);
  return res.json('id');
}

function getBalance(id) {
  const res = http.get(`${BASE_URL}/accounts/${id}`);
  if (res.status !== 200) fail(`GET /accounts/${id}: ${res.status} ${res.body}`);
  return res.json('balance');
}

// problemType is the RFC 9457 type of an answer, or '' when it has none.
function problemType(res) {
  try {
    return `${res.json('type') || ''}`;
  } catch (e) {
    return '';
  }
}

export function setup() {
  const world = createAccount('world', true);
  const target = createAccount('target', false);
  const sink = createAccount('sink', false);
  const fund = http.post(`${BASE_URL}/transfers`, JSON.stringify({
    from_account_id: world, to_account_id: target, amount: AMOUNT, idempotency_key: `k6-${RUN_ID}-fund`,
  }), json);
  if (fund.status !== 201) fail(`funding transfer: ${fund.status} ${fund.body}`);
  const balance = getBalance(target);
  if (balance !== AMOUNT) fail(`target balance after funding is ${balance}, want ${AMOUNT}`);
  return { target, sink, startAt: Date.now() + START_DELAY_MS };
}

export default function (data) {
  const wait = data.startAt - Date.now();
  if (wait > 0) sleep(wait / 1000);
  const vu = exec.vu.idInTest;
  const res = http.post(`${BASE_URL}/transfers`, JSON.stringify({
    from_account_id: data.target, to_account_id: data.sink, amount: AMOUNT, idempotency_key: `k6-${RUN_ID}-drain-${vu}`,
  }), {
    headers: json.headers,
    tags: { name: 'POST /transfers' },
    responseCallback: http.expectedStatuses(201, 422),
  });
  if (res.status === 201) {
    succeeded.add(1);
  } else if (res.status === 422 && problemType(res).endsWith('insufficient-funds')) {
    insufficient.add(1);
  } else {
    other.add(1);
    console.error(`VU ${vu}: unexpected answer ${res.status} ${res.body}`);
  }
  check(res, { 'status is 201 or 422 insufficient-funds': (r) => r.status === 201 || r.status === 422 });
}

export function teardown(data) {
  const target = getBalance(data.target);
  const sink = getBalance(data.sink);
  const ok = check(null, {
    'target balance is 0.0000': () => target === '0.0000',
    [`sink balance is ${AMOUNT}`]: () => sink === AMOUNT,
  });
  console.log(`final balances: target ${target}, sink ${sink}`);
  balanceOK.add(ok ? 1 : 0);
}
