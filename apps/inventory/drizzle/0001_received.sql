ALTER TABLE "products" ADD COLUMN "received" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
-- Products created before this column: what they hold now plus what committed reservations took.
UPDATE "products" SET "received" = "on_hand" + COALESCE((
	SELECT sum(ri."quantity") FROM "reservation_items" ri JOIN "reservations" r ON r."id" = ri."reservation_id"
	WHERE r."state" = 'committed' AND ri."product_id" = "products"."id"
), 0);
