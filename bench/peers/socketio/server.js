// The peer: what many teams build instead of Parley. One process per node;
// several nodes share Redis through @socket.io/redis-adapter. A client joins
// its rooms (conversations) at connect; "send" stores the message in
// PostgreSQL, then broadcasts it to the room and acknowledges.
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");
const { Pool } = require("pg");

async function main() {
  const port = Number(process.env.PORT);
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 16 });
  await pool.query(
    "CREATE TABLE IF NOT EXISTS peer_messages (id bigserial PRIMARY KEY, room text NOT NULL, " +
      "author text NOT NULL, text text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
  );
  const server = http.createServer();
  const io = new Server(server, { transports: ["websocket"], maxHttpBufferSize: 1e6 });
  if (process.env.REDIS_URL) {
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: process.env.REDIS_PREFIX || "peer" }));
  }
  io.on("connection", (socket) => {
    const auth = socket.handshake.auth || {};
    for (const room of auth.rooms || []) socket.join(room);
    socket.on("send", async (msg, ack) => {
      try {
        const r = await pool.query(
          "INSERT INTO peer_messages (room, author, text) VALUES ($1, $2, $3) RETURNING id",
          [msg.room, String(auth.user || ""), msg.text]
        );
        const id = r.rows[0].id;
        io.to(msg.room).emit("message", { id, room: msg.room, text: msg.text });
        if (typeof ack === "function") ack({ id });
      } catch (e) {
        if (typeof ack === "function") ack({ error: String(e) });
      }
    });
  });
  server.listen(port, "127.0.0.1", () => console.log("READY"));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
