"""Tables, as SQLAlchemy Core metadata. Migrations (Alembic) are the source of truth for the
database; this module mirrors them for queries, and a test checks the two agree.

Times are stored as naive UTC ``timestamp`` values on both engines; the storage adapter
attaches UTC when reading.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(32)

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("headless_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
    # Scoped keys only: the customer and manufacturer connection they open.
    sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=True),
    sa.Column("connection_id", ID, nullable=True),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("reference_id", sa.String(255), nullable=False),
    sa.Column("first_name", sa.String(100), nullable=False, default=""),
    sa.Column("last_name", sa.String(100), nullable=False, default=""),
    sa.Column("email", sa.String(254), nullable=False, default=""),
    # lower(email), for the case-insensitive match; empty when no email is known.
    sa.Column("email_key", sa.String(254), nullable=False, default=""),
    sa.Column("phone", sa.String(40), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_customers_org_email", "organization_id", "email_key"),
    sa.Index("ix_customers_org_created", "organization_id", "created_at", "id"),
    sa.Index("ix_customers_org_reference", "organization_id", "reference_id"),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("street_one", sa.String(200), nullable=False),
    sa.Column("street_two", sa.String(200), nullable=False, default=""),
    sa.Column("city", sa.String(200), nullable=False),
    sa.Column("state", sa.String(200), nullable=False),
    sa.Column("postal_code", sa.String(200), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("address_key", sa.String(1200), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_sites_org_customer", "organization_id", "customer_id"),
)

connect_sessions = sa.Table(
    "connect_sessions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
    # SHA-256 of the link token: the token is a bearer credential for the hosted flow.
    sa.Column("link_token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), nullable=True),
    sa.Column("reference_id", sa.String(255), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("client_name", sa.String(100), nullable=False),
    sa.Column("redirect_url", sa.String(2048), nullable=False),
    sa.Column("manufacturers", sa.JSON, nullable=False),
    sa.Column("device_types", sa.JSON, nullable=False),
    # The submitted customerInfo, to pre-fill the hosted customer form.
    sa.Column("customer_info", sa.JSON, nullable=True),
    sa.Column("customer_form_bypassed", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("error", sa.String(64), nullable=False, default=""),
    # Set while one callback is exchanging the code: the atomic claim that lets exactly
    # one callback per session reach the manufacturer's token endpoint.
    sa.Column("callback_claimed_at", sa.DateTime, nullable=True),
    sa.Column("connection_id", ID, nullable=True),
    # The hosted flow (standard mode). The link token, sealed, so the server can send the
    # browser back to the hosted pages after the manufacturer's redirect.
    sa.Column("link_token_sealed", sa.LargeBinary, nullable=True),
    sa.Column("flow_step", sa.String(32), nullable=False, server_default="welcome"),
    sa.Column("flow_manufacturer", sa.String(64), nullable=False, server_default=""),
    sa.Column("flow_error", sa.String(64), nullable=False, server_default=""),
    # Between authorization and device selection: the manufacturer's tokens (sealed) and
    # the account's compatible devices.
    sa.Column("pending_tokens_sealed", sa.LargeBinary, nullable=True),
    sa.Column("pending_devices", sa.JSON, nullable=True),
    sa.Column("otp_challenge_sealed", sa.LargeBinary, nullable=True),
)

# One row per authorization attempt: each gets its own state and PKCE verifier, so a
# retry after a failure never reuses a state.
authorization_attempts = sa.Table(
    "authorization_attempts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("session_id", ID, sa.ForeignKey("connect_sessions.id"), nullable=False),
    sa.Column("manufacturer", sa.String(64), nullable=False),
    sa.Column("state_hash", sa.String(64), nullable=False),
    # AES-GCM sealed; the row id is the associated data.
    sa.Column("code_verifier_sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("used_at", sa.DateTime, nullable=True),
    sa.Index("ix_attempts_session", "session_id"),
)

# AIP-155 request identifiers: the first response, replayed for 24 hours.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), primary_key=True),
    sa.Column("method", sa.String(100), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # AES-GCM sealed: the response holds the link token and the authorization URL.
    sa.Column("response_sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# One per customer and manufacturer: the stored grant. Tokens are AES-GCM sealed with the
# row id (and which token it is) as associated data.
manufacturer_connections = sa.Table(
    "manufacturer_connections",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("manufacturer", sa.String(64), nullable=False),
    # A ConnectionStatus value: active, needs_reauthorization or disconnected.
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("access_token_sealed", sa.LargeBinary, nullable=True),
    sa.Column("refresh_token_sealed", sa.LargeBinary, nullable=True),
    sa.Column("token_expires_at", sa.DateTime, nullable=True),
    sa.Column("scope", sa.String(1000), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    # Bumped by every change of the tokens or the status (a save, a refresh, a
    # disconnect): a reader waiting on another's refresh watches it change.
    sa.Column("token_generation", sa.Integer, nullable=False, server_default="0"),
    # Set while one caller refreshes the tokens: the claim that lets exactly one refresh
    # run at a time across replicas (a claim older than the refresh timeout is abandoned).
    sa.Column("refresh_claimed_at", sa.DateTime, nullable=True),
    # When a refresh last stored new tokens: readers arriving just after reuse them.
    sa.Column("token_refreshed_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint(
        "organization_id", "customer_id", "manufacturer", name="uq_connections_customer_mfr"
    ),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("organization_id", ID, sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("customer_id", ID, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("site_id", ID, sa.ForeignKey("sites.id"), nullable=True),
    sa.Column("connection_id", ID, sa.ForeignKey("manufacturer_connections.id"), nullable=False),
    sa.Column("manufacturer", sa.String(64), nullable=False),
    # The manufacturer's own id for the device.
    sa.Column("external_id", sa.String(200), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200), nullable=False, default=""),
    sa.Column("serial_number", sa.String(200), nullable=False, default=""),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("reference_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("connection_id", "external_id", name="uq_devices_connection_external"),
    sa.Index("ix_devices_org_customer", "organization_id", "customer_id"),
    # ListDevices: newest first, (created_at, id) as the page cursor.
    sa.Index("ix_devices_org_created", "organization_id", "created_at", "id"),
)

# A device's tags, one row each (the source of truth since 0003). The primary key serves
# loading a page's tags; the (tag, device_id) index serves filtering by tag.
device_tags = sa.Table(
    "device_tags",
    metadata,
    sa.Column("device_id", ID, sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Index("ix_device_tags_tag", "tag", "device_id"),
)
