//! gRPC server reflection against the real binary, in both protocol versions (`grpc.reflection.v1` and
//! `grpc.reflection.v1alpha`): the service list, files by symbol and by name, and a failed lookup answered
//! inside the stream (an ErrorResponse), after which the same stream answers the next request.

mod common;

use common::Server;
use prost::Message;
use prost_types::FileDescriptorProto;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// Everything the server registers, reflection itself included, in the order it is listed.
const SERVICES: [&str; 6] = [
    "basket.BasketService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "payment.PaymentService",
    "product.ProductService",
];

/// The one file of a file answer, decoded, with its services' names and their methods' names.
fn services_of(file: &FileDescriptorProto) -> Vec<(String, Vec<String>)> {
    file.service.iter().map(|s| (s.name().to_string(), s.method.iter().map(|m| m.name().to_string()).collect())).collect()
}

/// One test per protocol version: the generated client types differ, the conversation is the same.
macro_rules! reflection_conversation {
    ($test:ident, $version:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            use kassa_api::tonic_reflection::pb::$version::ServerReflectionRequest;
            use kassa_api::tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use kassa_api::tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use kassa_api::tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

            let s = Server::start();
            let channel = tonic::transport::Channel::from_shared(s.grpc.clone()).unwrap().connect().await.unwrap();
            let mut client = ServerReflectionClient::new(channel);
            // One stream for the whole conversation: each request is sent only after the previous answer.
            let (tx, rx) = mpsc::channel(1);
            let mut answers = client.server_reflection_info(ReceiverStream::new(rx)).await.unwrap().into_inner();
            let mut ask = async |request: MessageRequest| -> MessageResponse {
                let message = ServerReflectionRequest { host: String::new(), message_request: Some(request.clone()) };
                tx.send(message).await.expect("the request stream is open");
                let answer = answers.message().await.expect("the stream did not fail").expect("one answer per request");
                assert_eq!(answer.original_request.and_then(|r| r.message_request), Some(request), "the answer names its request");
                answer.message_response.expect("the answer carries a response")
            };
            let one_file = |response: MessageResponse| -> FileDescriptorProto {
                let MessageResponse::FileDescriptorResponse(files) = response else { panic!("not a file answer: {response:?}") };
                assert_eq!(files.file_descriptor_proto.len(), 1, "our files import nothing, so one file comes back");
                FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice()).expect("a file descriptor")
            };
            let error = |response: MessageResponse| {
                let MessageResponse::ErrorResponse(e) = response else { panic!("not an error answer: {response:?}") };
                (tonic::Code::from_i32(e.error_code), e.error_message)
            };

            let MessageResponse::ListServicesResponse(list) = ask(MessageRequest::ListServices(String::new())).await else {
                panic!("not a service list")
            };
            assert_eq!(list.service.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), SERVICES);

            // A method's symbol resolves to the file that defines its service.
            let file = one_file(ask(MessageRequest::FileContainingSymbol("payment.PaymentService.CreatePayment".into())).await);
            assert_eq!((file.name(), file.package()), ("payment.proto", "payment"));
            let methods = &services_of(&file)[0];
            assert_eq!(methods.0, "PaymentService");
            assert!(methods.1.iter().any(|m| m == "CreatePayment"), "{methods:?}");
            let file = one_file(ask(MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into())).await);
            assert_eq!(services_of(&file), [("Health".to_string(), vec!["Check".to_string(), "Watch".to_string()])]);

            // An unknown symbol: an error answer on the stream, and the stream goes on.
            let (code, message) = error(ask(MessageRequest::FileContainingSymbol("product.NoSuchService".into())).await);
            assert_eq!(code, tonic::Code::NotFound);
            assert!(message.contains("product.NoSuchService"), "{message}");
            let file = one_file(ask(MessageRequest::FileContainingSymbol("product.ProductService".into())).await);
            assert_eq!((file.name(), services_of(&file)[0].0.as_str()), ("product.proto", "ProductService"));

            // Files by name, a miss included, on the same stream.
            assert_eq!(one_file(ask(MessageRequest::FileByFilename("basket.proto".into())).await).name(), "basket.proto");
            let (code, _) = error(ask(MessageRequest::FileByFilename("no/such.proto".into())).await);
            assert_eq!(code, tonic::Code::NotFound);
            let MessageResponse::ListServicesResponse(again) = ask(MessageRequest::ListServices(String::new())).await else {
                panic!("not a service list")
            };
            assert_eq!(again.service.len(), SERVICES.len());

            // Closing our side ends the answers cleanly (end of stream with an OK status, not an error).
            drop(tx);
            assert!(answers.message().await.expect("a clean end").is_none());
        }
    };
}

reflection_conversation!(reflection_v1_conversation, v1);
reflection_conversation!(reflection_v1alpha_conversation, v1alpha);
