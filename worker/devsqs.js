// Starts the embedded local SQS server (fauxqs) on loopback only.
// `npx fauxqs` binds every interface; a dev server must not be reachable from the network.
// The module path comes from the Python launcher (worker/devsqs.py), so this file works from any cwd.
const modulePath = process.env.FAUXQS_MODULE;
const port = Number(process.argv[2] ?? "0");
const { buildApp } = await import(modulePath);
const app = buildApp({ logger: false, host: "127.0.0.1", defaultRegion: process.env.AWS_DEFAULT_REGION ?? "us-east-1" });
await app.listen({ host: "127.0.0.1", port });
const address = app.server.address();
// One JSON line on stdout tells the launcher where we listen.
process.stdout.write(JSON.stringify({ port: address.port }) + "\n");
const stop = async () => { await app.close(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// The Python launcher holds our stdin open: end-of-file means it is gone, even SIGKILLed, and a
// dev server must not outlive it (orphans kept ports and memory until someone noticed).
if (process.env.FAUXQS_EXIT_WITH_PARENT === "1") {
  process.stdin.on("end", stop);
  process.stdin.resume();
}
