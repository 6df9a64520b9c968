//! Every RPC of product.ProductService, basket.BasketService and payment.PaymentService over real gRPC
//! against the real binary, plus grpc.health.v1 and reflection: real data, real status codes.

mod common;

use common::Server;
use kassa_api::pb::basket::{self as b, basket_service_client::BasketServiceClient};
use kassa_api::pb::payment::{self as p, payment_service_client::PaymentServiceClient};
use kassa_api::pb::product::{self as pr, product_service_client::ProductServiceClient};
use kassa_api::tonic_health::pb::{HealthCheckRequest as HealthProbe, health_client::HealthClient};
use kassa_api::tonic_reflection::pb::v1::ServerReflectionRequest;
use kassa_api::tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use kassa_api::tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use kassa_api::tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_service() {
    let s = Server::start();
    let mut c = ProductServiceClient::connect(s.grpc.clone()).await.unwrap();
    let p1 = c.get_product(pr::GetProductRequest { id: 8 }).await.unwrap().into_inner().product.unwrap();
    assert_eq!((p1.name.as_str(), p1.price, p1.stock, p1.category.as_str()), ("Coffee Maker Deluxe", 89.99, 5, "Home & Kitchen"));
    assert_eq!(p1.created_at.len(), 20, "RFC 3339 without fraction: {}", p1.created_at);
    assert_eq!(c.get_product(pr::GetProductRequest { id: 999 }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.get_product(pr::GetProductRequest { id: -1 }).await.unwrap_err().code(), Code::InvalidArgument);

    let created = c
        .create_product(pr::CreateProductRequest {
            name: "Gadget".into(),
            description: "d".into(),
            price: 19.99,
            stock: 4,
            category: "Tools".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!((created.price, created.stock), (19.99, 4));
    for bad in [
        pr::CreateProductRequest { name: "X".into(), price: 1.999, ..Default::default() },
        pr::CreateProductRequest { name: "X".into(), price: f64::NAN, ..Default::default() },
        pr::CreateProductRequest { name: "X".into(), price: -1.0, ..Default::default() },
        pr::CreateProductRequest { name: "".into(), price: 1.0, ..Default::default() },
        pr::CreateProductRequest { name: "X".into(), price: 1.0, stock: -1, ..Default::default() },
    ] {
        let e = c.create_product(bad.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e}");
    }
    let updated = c
        .update_product(pr::UpdateProductRequest {
            id: created.id,
            name: "Gadget 2".into(),
            description: "".into(),
            price: 25.0,
            stock: 9,
            category: "Tools".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.price, updated.stock, updated.created_at),
        ("Gadget 2", 25.0, 9, created.created_at.clone())
    );
    let missing = pr::UpdateProductRequest { id: 999, name: "X".into(), price: 1.0, ..Default::default() };
    assert_eq!(c.update_product(missing).await.unwrap_err().code(), Code::NotFound);

    let all = c.list_products(pr::ListProductsRequest {}).await.unwrap().into_inner().products;
    assert_eq!(all.len(), 11);
    let top = c.get_top_most_expensive_products(pr::GetTopMostExpensiveProductsRequest { limit: 2 }).await.unwrap().into_inner().products;
    assert_eq!(top.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2]);
    let none = c.get_top_most_expensive_products(pr::GetTopMostExpensiveProductsRequest { limit: 0 }).await.unwrap().into_inner().products;
    assert!(none.is_empty());
    let unlimited =
        c.get_top_most_expensive_products(pr::GetTopMostExpensiveProductsRequest { limit: -1 }).await.unwrap().into_inner().products;
    assert_eq!(unlimited.len(), 11);
    let low = c.get_low_stock_products(pr::GetLowStockProductsRequest { max_stock: 10 }).await.unwrap().into_inner().products;
    assert_eq!(low.iter().map(|p| p.id).collect::<Vec<_>>(), vec![8, created.id, 1]);
    let books =
        c.get_products_by_category(pr::GetProductsByCategoryRequest { category: "Books".into() }).await.unwrap().into_inner().products;
    assert_eq!(books.iter().map(|p| p.id).collect::<Vec<_>>(), vec![6, 7]);

    let deleted = c.delete_product(pr::DeleteProductRequest { id: created.id }).await.unwrap().into_inner();
    assert_eq!(deleted.message, "Product deleted successfully");
    assert_eq!(c.delete_product(pr::DeleteProductRequest { id: created.id }).await.unwrap_err().code(), Code::NotFound);

    // Health and reflection.
    let channel = tonic::transport::Channel::from_shared(s.grpc.clone()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "product.ProductService", "basket.BasketService", "payment.PaymentService"] {
        let r = health.check(HealthProbe { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, 1, "{service} is SERVING");
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut answers = reflection.server_reflection_info(tonic::codegen::tokio_stream::iter(vec![ask])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("unexpected reflection answer") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["product.ProductService", "basket.BasketService", "payment.PaymentService"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basket_and_payment_services() {
    let s = Server::start();
    let mut bc = BasketServiceClient::connect(s.grpc.clone()).await.unwrap();
    let mut pc = PaymentServiceClient::connect(s.grpc.clone()).await.unwrap();

    let e = bc.get_basket(b::GetBasketRequest { user_id: "gina".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(bc.get_basket(b::GetBasketRequest { user_id: "".into() }).await.unwrap_err().code(), Code::InvalidArgument);
    let r = bc.create_basket(b::CreateBasketRequest { user_id: "gina".into() }).await.unwrap().into_inner();
    assert_eq!((r.success, r.message.as_str()), (true, "Basket created successfully"));
    let basket = r.basket.unwrap();
    assert_eq!(basket.user_id, "gina", "real data, not a placeholder");
    assert!(basket.id.starts_with("basket_gina_"));

    let r = bc.add_item(b::AddItemRequest { user_id: "gina".into(), product_id: 6, quantity: 3 }).await.unwrap().into_inner();
    assert_eq!((r.success, r.message.as_str()), (true, "Item added to basket successfully"));
    let basket = r.basket.unwrap();
    assert_eq!((basket.total, basket.item_count, basket.items.len()), (38.97, 3, 1));
    assert_eq!(basket.items[0].subtotal, 38.97);
    for (product_id, quantity, code) in [
        (6, 0, Code::InvalidArgument),
        (6, -1, Code::InvalidArgument),
        (999, 1, Code::NotFound),
        (8, 6, Code::FailedPrecondition),
        (0, 1, Code::InvalidArgument),
    ] {
        let e = bc.add_item(b::AddItemRequest { user_id: "gina".into(), product_id, quantity }).await.unwrap_err();
        assert_eq!(e.code(), code, "add {product_id} x{quantity}: {e}");
    }
    bc.add_item(b::AddItemRequest { user_id: "gina".into(), product_id: 7, quantity: 1 }).await.unwrap();
    let r = bc.update_item(b::UpdateItemRequest { user_id: "gina".into(), product_id: 6, quantity: 1 }).await.unwrap().into_inner();
    assert_eq!((r.message.as_str(), r.basket.unwrap().item_count), ("Item updated in basket successfully", 2));
    assert_eq!(
        bc.update_item(b::UpdateItemRequest { user_id: "gina".into(), product_id: 3, quantity: 1 }).await.unwrap_err().code(),
        Code::NotFound
    );
    let r = bc.remove_item(b::RemoveItemRequest { user_id: "gina".into(), product_id: 7 }).await.unwrap().into_inner();
    assert_eq!((r.message.as_str(), r.basket.unwrap().items.len()), ("Item removed from basket successfully", 1));
    let r = bc.get_basket(b::GetBasketRequest { user_id: "gina".into() }).await.unwrap().into_inner();
    assert_eq!((r.message.as_str(), r.basket.unwrap().total), ("Basket retrieved successfully", 12.99));
    let h = bc.health_check(b::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(
        (h.success, h.message.as_str(), h.service.as_str(), h.status.as_str(), h.version.as_str()),
        (true, "Basket service is healthy", "basket-service", "healthy", "1.0.0")
    );

    // Payments.
    let create = |user: &str| p::CreatePaymentRequest {
        user_id: user.into(),
        basket_id: String::new(),
        method: "paypal".into(),
        provider: "paypal".into(),
        currency: String::new(),
        description: "grpc".into(),
    };
    assert_eq!(pc.create_payment(create("nobody")).await.unwrap_err().code(), Code::NotFound);
    let mut bad = create("gina");
    bad.method = "cash".into();
    assert_eq!(pc.create_payment(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let r = pc.create_payment(create("gina")).await.unwrap().into_inner();
    assert_eq!((r.success, r.message.as_str()), (true, "Payment created successfully"));
    let pay = r.payment.unwrap();
    assert_eq!(
        (pay.user_id.as_str(), pay.amount, pay.status.as_str(), pay.currency.as_str(), pay.items.len()),
        ("gina", 12.99, "pending", "USD", 1)
    );
    let r = pc.get_payment(p::GetPaymentRequest { payment_id: pay.id.clone() }).await.unwrap().into_inner();
    assert_eq!((r.message.as_str(), r.payment.unwrap().id), ("Payment retrieved successfully", pay.id.clone()));
    assert_eq!(pc.get_payment(p::GetPaymentRequest { payment_id: "nope".into() }).await.unwrap_err().code(), Code::NotFound);
    let r =
        pc.process_payment(p::ProcessPaymentRequest { payment_id: pay.id.clone(), provider_id: "pp_1".into() }).await.unwrap().into_inner();
    let done = r.payment.unwrap();
    assert_eq!(
        (r.message.as_str(), done.status.as_str(), done.provider_id.as_str()),
        ("Payment processed successfully", "completed", "pp_1")
    );
    assert_eq!(done.processed_at.len(), 20);
    let e = pc.process_payment(p::ProcessPaymentRequest { payment_id: pay.id.clone(), provider_id: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let cleared = bc.get_basket(b::GetBasketRequest { user_id: "gina".into() }).await.unwrap().into_inner().basket.unwrap();
    assert!(cleared.items.is_empty(), "basket cleared by the sale");

    assert_eq!(
        pc.refund_payment(p::RefundPaymentRequest { payment_id: pay.id.clone(), amount: 0.001, reason: String::new() })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        pc.refund_payment(p::RefundPaymentRequest { payment_id: pay.id.clone(), amount: 100.0, reason: String::new() })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let r = pc
        .refund_payment(p::RefundPaymentRequest { payment_id: pay.id.clone(), amount: 0.0, reason: "r".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.message.as_str(), r.payment.unwrap().status.as_str()), ("Payment refunded successfully", "refunded"));

    bc.add_item(b::AddItemRequest { user_id: "gina".into(), product_id: 10, quantity: 2 }).await.unwrap();
    let second = pc.create_payment(create("gina")).await.unwrap().into_inner().payment.unwrap();
    let e = pc.update_payment(p::UpdatePaymentRequest { payment_id: second.id.clone(), status: "bogus".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let r = pc
        .update_payment(p::UpdatePaymentRequest { payment_id: second.id.clone(), status: "cancelled".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.message.as_str(), r.payment.unwrap().status.as_str()), ("Payment updated successfully", "cancelled"));
    assert_eq!(
        pc.update_payment(p::UpdatePaymentRequest { payment_id: "nope".into(), status: "failed".into() }).await.unwrap_err().code(),
        Code::NotFound
    );

    let r = pc.get_payments_by_user(p::GetPaymentsByUserRequest { user_id: "gina".into() }).await.unwrap().into_inner();
    assert_eq!((r.message.as_str(), r.payments.len()), ("Payments retrieved successfully", 2));
    assert_eq!(r.payments[0].id, second.id, "newest first");
    let r = pc.get_payment_stats(p::GetPaymentStatsRequest { user_id: "gina".into() }).await.unwrap().into_inner();
    let stats = r.stats.unwrap();
    assert_eq!((r.message.as_str(), stats.total_payments, stats.total_amount), ("Payment stats retrieved successfully", 2, 102.99));
    let h = pc.health_check(p::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!((h.success, h.service.as_str()), (true, "payment-service"));

    let r = bc.clear_basket(b::ClearBasketRequest { user_id: "gina".into() }).await.unwrap().into_inner();
    assert_eq!(r.message, "Basket cleared successfully");
    let r = bc.delete_basket(b::DeleteBasketRequest { user_id: "gina".into() }).await.unwrap().into_inner();
    assert_eq!((r.success, r.message.as_str()), (true, "Basket deleted successfully"));
    assert_eq!(bc.get_basket(b::GetBasketRequest { user_id: "gina".into() }).await.unwrap_err().code(), Code::NotFound);
}
