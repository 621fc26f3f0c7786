CREATE TABLE "provider_ledger" (
	"payment_id" uuid NOT NULL,
	"operation" text NOT NULL,
	"amount_minor" bigint DEFAULT 0 NOT NULL,
	"decline_reason" text,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "provider_ledger_pk" PRIMARY KEY("payment_id","operation")
);
