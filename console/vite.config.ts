// One build for every host: relative asset paths (base "./") and hash routing, so the
// same dist/ runs under the local stack at / and from S3 behind CloudFront.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 400 },
  server: {
    // `npm run dev` beside `make dev`: API and WebSockets proxied to the local stack
    proxy: {
      "/api": { target: "http://127.0.0.1:8000", ws: true },
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
});
