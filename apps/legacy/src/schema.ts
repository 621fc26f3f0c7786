import type { Sql } from "postgres";

/**
 * The monolith's schema, as monoliths have it: one schema, foreign keys across what are in the
 * mesh four services' data (users, products, stock, orders). Applied in order at start-up; each
 * step runs once (recorded in `schema_migrations`).
 *
 * Step 2 is the change data capture the migration adds to the monolith: triggers on the
 * catalogue and stock tables write a row into `cdc_outbox` in the same transaction as the change,
 * whoever made it (the monolith, a back-office script, a psql session). The relay publishes those
 * rows to JetStream; the monolith's own code never writes to the outbox. Step 4 makes the capture
 * lock the product row first, so concurrent changes of one product are captured in order.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE users (
     id uuid PRIMARY KEY,
     email text NOT NULL UNIQUE,
     display_name text NOT NULL,
     password_hash text NOT NULL,
     roles text[] NOT NULL DEFAULT '{customer}',
     created_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE products (
     id uuid PRIMARY KEY,
     sku text NOT NULL UNIQUE,
     name text NOT NULL,
     price_minor bigint NOT NULL CHECK (price_minor >= 0),
     currency char(3) NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     updated_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE stock (
     product_id uuid PRIMARY KEY REFERENCES products(id) ON DELETE CASCADE,
     on_hand bigint NOT NULL CHECK (on_hand >= 0),
     updated_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE orders (
     id uuid PRIMARY KEY,
     user_id uuid NOT NULL REFERENCES users(id),
     idempotency_key text NOT NULL,
     status text NOT NULL,
     total_minor bigint NOT NULL,
     currency char(3) NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     updated_at timestamptz NOT NULL DEFAULT now(),
     UNIQUE (user_id, idempotency_key)
   );
   CREATE TABLE order_items (
     order_id uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
     product_id uuid NOT NULL REFERENCES products(id),
     quantity bigint NOT NULL CHECK (quantity > 0),
     unit_price_minor bigint NOT NULL,
     PRIMARY KEY (order_id, product_id)
   );
   CREATE INDEX orders_user ON orders (user_id, created_at);`,
  `CREATE TABLE cdc_outbox (
     seq bigserial PRIMARY KEY,
     event_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
     event_type text NOT NULL,
     aggregate_id uuid NOT NULL,
     payload jsonb NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     sent_at timestamptz
   );
   CREATE INDEX cdc_outbox_unsent ON cdc_outbox (seq) WHERE sent_at IS NULL;
   CREATE FUNCTION cdc_product_state(pid uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
     SELECT jsonb_build_object(
       'id', p.id, 'sku', p.sku, 'name', p.name,
       'price_minor', p.price_minor, 'currency', p.currency,
       'on_hand', COALESCE(s.on_hand, 0),
       'create_time', p.created_at, 'update_time', GREATEST(p.updated_at, s.updated_at))
     FROM products p LEFT JOIN stock s ON s.product_id = p.id WHERE p.id = pid
   $$;
   CREATE FUNCTION cdc_capture() RETURNS trigger LANGUAGE plpgsql AS $$
   DECLARE pid uuid;
   BEGIN
     IF TG_TABLE_NAME = 'products' THEN pid := NEW.id; ELSE pid := NEW.product_id; END IF;
     INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
       VALUES ('legacy.product.changed', pid, cdc_product_state(pid));
     PERFORM pg_notify('cdc_outbox', '');
     RETURN NULL;
   END $$;
   CREATE TRIGGER products_cdc AFTER INSERT OR UPDATE ON products
     FOR EACH ROW EXECUTE FUNCTION cdc_capture();
   CREATE TRIGGER stock_cdc AFTER INSERT OR UPDATE ON stock
     FOR EACH ROW EXECUTE FUNCTION cdc_capture();`,
  // Step 3: the relay's side. `cdc_events` has the mesh's outbox shape (libs/events
  // `outboxTable`): the translator turns each cdc_outbox row into a Protobuf ProductChanged row
  // here, and the mesh's own outbox relay publishes it. A change made by the reverse sync (the
  // new services' events applied back into this database) runs with `meshwork.origin = 'mesh'`
  // and is not captured: without that marker it would travel back to the mesh, and loop.
  // `mesh_sync` is the reverse sync's high-water marks per product (the inventory row's version
  // of the last name/price and of the last stock applied); `mesh_inbox` its consumer's inbox.
  `CREATE TABLE cdc_events (
     seq bigserial PRIMARY KEY,
     id uuid NOT NULL UNIQUE,
     subject text NOT NULL,
     type text NOT NULL,
     headers jsonb NOT NULL,
     payload bytea NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     sent_at timestamptz
   );
   CREATE INDEX cdc_events_unsent_idx ON cdc_events (seq) WHERE sent_at IS NULL;
   CREATE TABLE mesh_sync (
     product_id uuid PRIMARY KEY,
     name_version bigint NOT NULL DEFAULT 0,
     stock_version bigint NOT NULL DEFAULT 0,
     applied_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE mesh_inbox (
     consumer text NOT NULL,
     event_id text NOT NULL,
     processed_at timestamptz NOT NULL DEFAULT now(),
     CONSTRAINT mesh_inbox_pk PRIMARY KEY (consumer, event_id)
   );
   CREATE OR REPLACE FUNCTION cdc_capture() RETURNS trigger LANGUAGE plpgsql AS $$
   DECLARE pid uuid;
   BEGIN
     IF current_setting('meshwork.origin', true) = 'mesh' THEN RETURN NULL; END IF;
     IF TG_TABLE_NAME = 'products' THEN pid := NEW.id; ELSE pid := NEW.product_id; END IF;
     INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
       VALUES ('legacy.product.changed', pid, cdc_product_state(pid));
     PERFORM pg_notify('cdc_outbox', '');
     RETURN NULL;
   END $$;`,
  // Step 4: the capture takes the product row's lock before it reads the state. Without it two
  // transactions on one product, one on \`products\` and one on \`stock\`, each captured a state
  // missing the other's uncommitted change, and the higher sequence won with stale data. With it
  // the second waits for the first to commit and then reads (a fresh snapshot per statement in
  // READ COMMITTED) a state holding both, under the higher sequence. NO KEY UPDATE: what an
  // UPDATE of products takes itself, and it does not block foreign-key checks (KEY SHARE). The
  // lock comes before the origin check, so a reverse-sync write is ordered the same way.
  `CREATE OR REPLACE FUNCTION cdc_capture() RETURNS trigger LANGUAGE plpgsql AS $$
   DECLARE pid uuid;
   BEGIN
     IF TG_TABLE_NAME = 'products' THEN pid := NEW.id; ELSE pid := NEW.product_id; END IF;
     PERFORM 1 FROM products WHERE id = pid FOR NO KEY UPDATE;
     IF current_setting('meshwork.origin', true) = 'mesh' THEN RETURN NULL; END IF;
     INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
       VALUES ('legacy.product.changed', pid, cdc_product_state(pid));
     PERFORM pg_notify('cdc_outbox', '');
     RETURN NULL;
   END $$;`,
  // Step 5: users follow the traffic. A trigger on `users` captures the account (its id, email,
  // name, password hash and creation time) into the same cdc_outbox, as 'legacy.user.changed';
  // the translator turns it into a UserChanged for the users service. Only the columns the mesh
  // keeps fire it (a roles change does not: legacy's roles are not copied).
  `CREATE FUNCTION cdc_user_state(uid uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
     SELECT jsonb_build_object(
       'id', u.id, 'email', u.email, 'display_name', u.display_name,
       'password_hash', u.password_hash, 'create_time', u.created_at)
     FROM users u WHERE u.id = uid
   $$;
   CREATE FUNCTION cdc_capture_user() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     IF current_setting('meshwork.origin', true) = 'mesh' THEN RETURN NULL; END IF;
     INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
       VALUES ('legacy.user.changed', NEW.id, cdc_user_state(NEW.id));
     PERFORM pg_notify('cdc_outbox', '');
     RETURN NULL;
   END $$;
   CREATE TRIGGER users_cdc AFTER INSERT OR UPDATE OF email, display_name, password_hash ON users
     FOR EACH ROW EXECUTE FUNCTION cdc_capture_user();`,
  // Step 6: orders follow the traffic. An order and its lines are written by several statements
  // (the order row, then each line), so the capture is a constraint trigger deferred to commit:
  // it reads the order with all its lines, once per order and transaction (a later firing in the
  // same transaction finds the row it wrote, by xmin, and stops). It takes the order row's lock
  // first, like step 4 for products, so two transactions changing one order are captured in
  // commit order with the later state under the higher sequence. Orders from the mesh are never
  // captured back: the order sync writes under `meshwork.origin = 'mesh'` (still set when the
  // deferred trigger runs at commit) and keys them `mesh:<id>`, and either stops the capture.
  `CREATE FUNCTION cdc_order_state(oid uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
     SELECT jsonb_build_object(
       'id', o.id, 'user_id', o.user_id, 'idempotency_key', o.idempotency_key, 'status', o.status,
       'total_minor', o.total_minor, 'currency', o.currency,
       'create_time', o.created_at, 'update_time', o.updated_at,
       'items', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                  'product_id', i.product_id, 'quantity', i.quantity,
                  'unit_price_minor', i.unit_price_minor) ORDER BY i.product_id)
                FROM order_items i WHERE i.order_id = o.id), '[]'::jsonb))
     FROM orders o WHERE o.id = oid
   $$;
   CREATE FUNCTION cdc_capture_order() RETURNS trigger LANGUAGE plpgsql AS $$
   DECLARE oid uuid; okey text;
   BEGIN
     IF TG_TABLE_NAME = 'orders' THEN oid := NEW.id;
     ELSIF TG_OP = 'DELETE' THEN oid := OLD.order_id;
     ELSE oid := NEW.order_id; END IF;
     SELECT idempotency_key INTO okey FROM orders WHERE id = oid FOR NO KEY UPDATE;
     IF NOT FOUND OR okey LIKE 'mesh:%' THEN RETURN NULL; END IF;
     IF current_setting('meshwork.origin', true) = 'mesh' THEN RETURN NULL; END IF;
     IF EXISTS (SELECT 1 FROM cdc_outbox WHERE aggregate_id = oid
                  AND event_type = 'legacy.order.changed' AND xmin = pg_current_xact_id()::xid) THEN
       RETURN NULL;
     END IF;
     INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
       VALUES ('legacy.order.changed', oid, cdc_order_state(oid));
     PERFORM pg_notify('cdc_outbox', '');
     RETURN NULL;
   END $$;
   CREATE CONSTRAINT TRIGGER orders_cdc AFTER INSERT OR UPDATE ON orders
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdc_capture_order();
   CREATE CONSTRAINT TRIGGER order_items_cdc AFTER INSERT OR UPDATE OR DELETE ON order_items
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdc_capture_order();`,
  // Step 7: a capture says what it saw of the mesh, and what legacy itself changed. The reverse
  // sync's marks (`mesh_sync`: the versions of the mesh's last name/price and stock writes it
  // applied here) go into every product capture, so the mesh can tell a capture taken before its
  // newer write reached this database (concurrent) from one taken after. `legacy_delta` is the
  // running sum of legacy's own changes to units on hand (never the reverse sync's, which carry
  // the mesh's count): the mesh adds what it grew by, rather than taking a concurrent capture's
  // absolute count, which knows nothing of the mesh's own sales. Counted under the product lock
  // of step 4, so captures of one product carry it in sequence order.
  `ALTER TABLE mesh_sync ADD COLUMN legacy_delta bigint NOT NULL DEFAULT 0;
   CREATE OR REPLACE FUNCTION cdc_product_state(pid uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
     SELECT jsonb_build_object(
       'id', p.id, 'sku', p.sku, 'name', p.name,
       'price_minor', p.price_minor, 'currency', p.currency,
       'on_hand', COALESCE(s.on_hand, 0),
       'create_time', p.created_at, 'update_time', GREATEST(p.updated_at, s.updated_at),
       'seen_name_version', COALESCE(m.name_version, 0),
       'seen_stock_version', COALESCE(m.stock_version, 0),
       'legacy_delta', COALESCE(m.legacy_delta, 0))
     FROM products p LEFT JOIN stock s ON s.product_id = p.id
     LEFT JOIN mesh_sync m ON m.product_id = p.id WHERE p.id = pid
   $$;
   CREATE OR REPLACE FUNCTION cdc_capture() RETURNS trigger LANGUAGE plpgsql AS $$
   DECLARE pid uuid; delta bigint := 0;
   BEGIN
     IF TG_TABLE_NAME = 'products' THEN pid := NEW.id; ELSE pid := NEW.product_id; END IF;
     PERFORM 1 FROM products WHERE id = pid FOR NO KEY UPDATE;
     IF current_setting('meshwork.origin', true) = 'mesh' THEN RETURN NULL; END IF;
     IF TG_TABLE_NAME = 'stock' THEN
       delta := NEW.on_hand - CASE WHEN TG_OP = 'UPDATE' THEN OLD.on_hand ELSE 0 END;
     END IF;
     IF delta <> 0 THEN
       INSERT INTO mesh_sync AS m (product_id, legacy_delta) VALUES (pid, delta)
         ON CONFLICT (product_id) DO UPDATE SET legacy_delta = m.legacy_delta + excluded.legacy_delta;
     END IF;
     INSERT INTO cdc_outbox (event_type, aggregate_id, payload)
       VALUES ('legacy.product.changed', pid, cdc_product_state(pid));
     PERFORM pg_notify('cdc_outbox', '');
     RETURN NULL;
   END $$;`,
];

/** Applies the migrations not applied yet, in one transaction each, serialised by an advisory lock. */
export async function migrate(sql: Sql): Promise<number> {
  let applied = 0;
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('legacy-migrations'))`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`;
    const done = new Set(
      (await tx<{ version: number }[]>`SELECT version FROM schema_migrations`).map((r) => r.version),
    );
    for (const [i, step] of MIGRATIONS.entries()) {
      if (done.has(i + 1)) continue;
      await tx.unsafe(step);
      await tx`INSERT INTO schema_migrations (version) VALUES (${i + 1})`;
      applied++;
    }
  });
  return applied;
}
