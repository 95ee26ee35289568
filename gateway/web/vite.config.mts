import { defineConfig } from 'vite';

/** Where `npm run dev:web` sends API calls: a running Node gateway. */
const gateway = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  // Relative asset URLs, so the same build works behind any path prefix.
  base: './',
  oxc: { jsx: { runtime: 'automatic' } },
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  server: {
    fs: { allow: ['../..'] },
    proxy: { '^/(iot\\.|v1/|\\.well-known/)': { target: gateway, changeOrigin: true } },
  },
});
