ALTER TABLE "legacy_sync" ADD COLUMN "mesh_name_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "legacy_sync" ADD COLUMN "mesh_stock_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "legacy_sync" ADD COLUMN "legacy_stock_delta" bigint;--> statement-breakpoint
ALTER TABLE "products" ADD COLUMN "legacy_synced" boolean DEFAULT false NOT NULL;--> statement-breakpoint
-- Products the legacy sync applied before this migration (a legacy_sync row) are legacy-synced.
UPDATE "products" SET "legacy_synced" = true WHERE "id" IN (SELECT "product_id" FROM "legacy_sync");