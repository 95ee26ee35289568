/**
 * Integration tests here start real servers (nats-server, PostgreSQL
 * databases, service processes) on a shared 2-core machine, where a start-up
 * can occasionally miss its window. A failing test is run again, at most
 * twice, with the first failure printed, so a real failure still fails the run
 * and a flaky one stays visible in the log.
 */
jest.retryTimes(2, { logErrorsBeforeRetry: true });
