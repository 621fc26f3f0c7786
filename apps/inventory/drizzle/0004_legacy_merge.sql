ALTER TABLE "legacy_sync" ADD COLUMN "mesh_name_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "legacy_sync" ADD COLUMN "mesh_stock_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "legacy_sync" ADD COLUMN "legacy_stock_delta" bigint;