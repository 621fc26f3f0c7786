ALTER TABLE "sagas" ADD COLUMN "transient_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "sagas" ADD COLUMN "transient_since" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "sagas" ADD COLUMN "undone" jsonb DEFAULT '[]'::jsonb NOT NULL;