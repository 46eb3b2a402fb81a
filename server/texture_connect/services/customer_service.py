"""CustomerService: the contacts and sites the Connect flow created, with their devices."""

from __future__ import annotations

from grpc import aio

from texture.connect.v1 import customers_pb2, customers_pb2_grpc
from texture_connect.domain.errors import FieldViolation, fail, invalid
from texture_connect.domain.keys import KeyKind
from texture_connect.domain.pagination import next_page_token, read_page
from texture_connect.domain.records import Customer, Device, Site
from texture_connect.services import encode
from texture_connect.services.context import current_organization, current_principal
from texture_connect.storage import Store, Transaction


def _own_customer_only(customer_id: str) -> None:
    """A scoped key may read its own customer and nothing else (the same answer whether
    the other customer exists or not)."""
    principal = current_principal()
    if principal.key_kind is KeyKind.SCOPED and customer_id != principal.customer_id:
        raise fail("SCOPED_KEY_FORBIDDEN")


class CustomerService(customers_pb2_grpc.CustomerServiceServicer):
    def __init__(self, *, store: Store) -> None:
        self._store = store

    async def GetCustomer(
        self, request: customers_pb2.GetCustomerRequest, context: aio.ServicerContext
    ) -> customers_pb2.GetCustomerResponse:
        if not request.customer_id:
            raise invalid([FieldViolation("customerId", "is required")])
        _own_customer_only(request.customer_id)
        org_id = current_organization().id

        def load(tx: Transaction) -> tuple[Customer | None, list[Site], list[Device]]:
            customer = tx.get_customer(org_id, request.customer_id)
            if customer is None:
                return None, [], []
            return (
                customer,
                tx.list_customer_sites(org_id, customer.id),
                tx.devices_of_customer(org_id, customer.id),
            )

        customer, sites, devices = await self._store.read(load)
        if customer is None:
            raise fail("CUSTOMER_NOT_FOUND", field="customerId")
        return customers_pb2.GetCustomerResponse(customer=encode.customer(customer, sites, devices))

    async def ListCustomers(
        self, request: customers_pb2.ListCustomersRequest, context: aio.ServicerContext
    ) -> customers_pb2.ListCustomersResponse:
        _require_secret_key()
        org_id = current_organization().id
        query = f"customers:{org_id}:{request.reference_id}:{request.email.strip().lower()}"
        page = read_page(request.page_size, request.page_token, query)

        def load(
            tx: Transaction,
        ) -> tuple[list[Customer], dict[str, list[Site]], dict[str, list[Device]]]:
            customers = tx.list_customers(
                org_id,
                reference_id=request.reference_id,
                email=request.email.strip(),
                limit=page.size + 1,
                after=page.after,
            )
            ids = [c.id for c in customers[: page.size]]
            return (
                customers,
                tx.sites_of_customers(org_id, ids),
                tx.devices_of_customers(org_id, ids),
            )

        customers, sites, devices = await self._store.read(load)
        response = customers_pb2.ListCustomersResponse(
            customers=[
                encode.customer(c, sites.get(c.id, []), devices.get(c.id, []))
                for c in customers[: page.size]
            ]
        )
        if len(customers) > page.size:
            last = customers[page.size - 1]
            assert last.created_at is not None
            response.next_page_token = next_page_token(last.created_at, last.id, query)
        return response

    async def GetSite(
        self, request: customers_pb2.GetSiteRequest, context: aio.ServicerContext
    ) -> customers_pb2.GetSiteResponse:
        if not request.site_id:
            raise invalid([FieldViolation("siteId", "is required")])
        principal = current_principal()
        org_id = current_organization().id

        def load(tx: Transaction) -> tuple[Site | None, list[Device]]:
            site = tx.get_site(org_id, request.site_id)
            if site is None:
                return None, []
            return site, tx.devices_of_customer(org_id, site.customer_id)

        site, devices = await self._store.read(load)
        if principal.key_kind is KeyKind.SCOPED and (
            site is None or site.customer_id != principal.customer_id
        ):
            raise fail("SCOPED_KEY_FORBIDDEN")
        if site is None:
            raise fail("SITE_NOT_FOUND", field="siteId")
        return customers_pb2.GetSiteResponse(
            site=encode.site(site, [d.id for d in devices if d.site_id == site.id])
        )

    async def ListSites(
        self, request: customers_pb2.ListSitesRequest, context: aio.ServicerContext
    ) -> customers_pb2.ListSitesResponse:
        _require_secret_key()
        org_id = current_organization().id
        query = f"sites:{org_id}:{request.customer_id}"
        page = read_page(request.page_size, request.page_token, query)

        def load(tx: Transaction) -> tuple[list[Site], dict[str, list[Device]]]:
            sites = tx.list_sites(
                org_id, customer_id=request.customer_id, limit=page.size + 1, after=page.after
            )
            owners = sorted({s.customer_id for s in sites[: page.size]})
            return sites, tx.devices_of_customers(org_id, owners)

        sites, devices = await self._store.read(load)
        response = customers_pb2.ListSitesResponse(
            sites=[
                encode.site(s, [d.id for d in devices.get(s.customer_id, []) if d.site_id == s.id])
                for s in sites[: page.size]
            ]
        )
        if len(sites) > page.size:
            last = sites[page.size - 1]
            assert last.created_at is not None
            response.next_page_token = next_page_token(last.created_at, last.id, query)
        return response


def _require_secret_key() -> None:
    if current_principal().key_kind is not KeyKind.SECRET:
        raise fail("SECRET_KEY_REQUIRED")
