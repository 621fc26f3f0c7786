CREATE TABLE "auth_failures" (
	"account" text PRIMARY KEY NOT NULL,
	"failures" integer NOT NULL,
	"window_start" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "bootstrap_secret" (
	"id" smallint PRIMARY KEY DEFAULT 1 NOT NULL,
	"secret_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"consumed_at" timestamp with time zone,
	CONSTRAINT "bootstrap_secret_single_row" CHECK ("bootstrap_secret"."id" = 1)
);
