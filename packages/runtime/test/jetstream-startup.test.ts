import { withJetStreamStartupPatience } from '../src/nats';

/** An error as nats.js throws a JetStream API answer: `api_error.err_code`. */
const apiError = (code: number, description: string) => Object.assign(new Error(description), { api_error: { code: 500, err_code: code, description } });

test('retries while the cluster gives its startup answers, then returns what the creation returns', async () => {
  const answers = [apiError(10049, 'error creating store for stream'), apiError(10039, 'jetstream not enabled for account')];
  let calls = 0;
  const result = await withJetStreamStartupPatience(async () => {
    calls++;
    const next = answers.shift();
    if (next) throw next;
    return 'created';
  });
  expect({ result, calls }).toEqual({ result: 'created', calls: 3 });
});

test('any other error is thrown at once', async () => {
  let calls = 0;
  const err = apiError(10058, 'stream name already in use');
  await expect(
    withJetStreamStartupPatience(async () => {
      calls++;
      throw err;
    }),
  ).rejects.toBe(err);
  expect(calls).toBe(1);
});

test('a startup answer past the patience is thrown', async () => {
  const err = apiError(10049, 'error creating store for stream');
  await expect(
    withJetStreamStartupPatience(async () => {
      throw err;
    }, 0),
  ).rejects.toBe(err);
});
