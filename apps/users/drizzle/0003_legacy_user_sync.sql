CREATE TABLE "inbox" (
	"consumer" text NOT NULL,
	"event_id" text NOT NULL,
	"processed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "inbox_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE TABLE "legacy_user_sync" (
	"user_id" uuid PRIMARY KEY NOT NULL,
	"sequence" bigint NOT NULL,
	"password_fingerprint" text NOT NULL,
	"conflict" text,
	"applied_at" timestamp with time zone DEFAULT now() NOT NULL
);
