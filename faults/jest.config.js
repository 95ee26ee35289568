/**
 * The fault suite (`npm run test:faults`): real processes killed and stopped
 * while a known set of points is published. Not part of `npm test` (its files
 * are `faults/test/*.fault.ts`, outside the root config's `*.test.ts`); it
 * starts every server it needs itself, so it has no global setup. One file at
 * a time: the faults share one platform and must not overlap.
 */
module.exports = {
  rootDir: '..',
  testEnvironment: 'node',
  roots: ['<rootDir>/faults'],
  testMatch: ['<rootDir>/faults/test/**/*.fault.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }],
    // The rig reads monitoring's configuration through its test harness, which loads hyparquet (ES modules only), as the root config does.
    '/node_modules/hyparquet(-writer)?/.+\\.js$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!hyparquet(-writer)?/)'],
  testTimeout: 240000,
  maxWorkers: 1,
};
