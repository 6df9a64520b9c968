//! gRPC server reflection, `grpc.reflection.v1` and `grpc.reflection.v1alpha`, both answered from one
//! index of the descriptor sets that the server registers.
//!
//! tonic-reflection 0.14's own service ends the whole stream with a status when a lookup fails (an
//! unknown symbol or file name). The reflection protocol answers a failed lookup with an `ErrorResponse`
//! on the stream and keeps the stream open for the next request, which is what grpcurl and the grpc-go
//! and grpc-java clients expect. That crate's index is private, so this module keeps its own (a few maps
//! over the same encoded descriptor sets) and uses only the crate's generated messages and traits.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto};
use tonic::{Code, Request, Response, Status, Streaming};

/// An encoded `FileDescriptorSet` read with each file left as its encoded bytes, so that a file is served
/// byte for byte as it was compiled (custom options and unknown fields included).
#[derive(Clone, PartialEq, prost::Message)]
struct EncodedFiles {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

struct File {
    encoded: Vec<u8>,
    dependencies: Vec<String>,
}

/// What a reflection request asks, whichever protocol version carried it.
#[derive(Debug, PartialEq)]
enum Ask {
    File(String),
    Symbol(String),
    Extension(String, i32),
    ExtensionNumbers(String),
    Services,
}

/// What the answer carries, whichever protocol version will carry it.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The file asked for first, then every file it depends on, transitively.
    Files(Vec<Vec<u8>>),
    ExtensionNumbers(String, Vec<i32>),
    Services(Vec<String>),
}

#[derive(Default)]
struct Index {
    files: HashMap<String, File>,
    /// Fully qualified symbol (no leading dot) -> the name of the file that defines it.
    symbols: HashMap<String, String>,
    /// Extended message -> (extension field number, the file that defines the extension).
    extensions: HashMap<String, Vec<(i32, String)>>,
    services: Vec<String>,
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() { name.to_string() } else { format!("{scope}.{name}") }
}

impl Index {
    fn new(sets: &[&[u8]]) -> Result<Index, prost::DecodeError> {
        let mut index = Index::default();
        for set in sets {
            for encoded in EncodedFiles::decode(*set)?.file {
                let descriptor = FileDescriptorProto::decode(encoded.as_slice())?;
                index.add(&descriptor, encoded);
            }
        }
        index.services.sort();
        Ok(index)
    }

    /// Registers one file; the first file registered under a name wins.
    fn add(&mut self, fd: &FileDescriptorProto, encoded: Vec<u8>) {
        let name = fd.name().to_string();
        if self.files.contains_key(&name) {
            return;
        }
        let package = fd.package();
        let mut symbols = Vec::new();
        let mut extensions = Vec::new();
        for m in &fd.message_type {
            message(package, m, &mut symbols, &mut extensions);
        }
        for e in &fd.enum_type {
            enumeration(package, e, &mut symbols);
        }
        for x in &fd.extension {
            extension(package, x, &mut symbols, &mut extensions);
        }
        for s in &fd.service {
            let service = qualify(package, s.name());
            symbols.extend(s.method.iter().map(|m| qualify(&service, m.name())));
            self.services.push(service.clone());
            symbols.push(service);
        }
        for symbol in symbols {
            self.symbols.entry(symbol).or_insert_with(|| name.clone());
        }
        for (extendee, number) in extensions {
            self.extensions.entry(extendee).or_default().push((number, name.clone()));
        }
        self.files.insert(name, File { encoded, dependencies: fd.dependency.clone() });
    }

    fn answer(&self, ask: Option<Ask>) -> Result<Answer, (Code, String)> {
        match ask {
            None => Err((Code::InvalidArgument, "the request names nothing to look up".into())),
            Some(Ask::Services) => Ok(Answer::Services(self.services.clone())),
            Some(Ask::File(name)) => self.file_with_dependencies(&name),
            Some(Ask::Symbol(symbol)) => match self.symbols.get(symbol.trim_start_matches('.')) {
                Some(file) => self.file_with_dependencies(file),
                None => Err((Code::NotFound, format!("symbol '{symbol}' not found"))),
            },
            Some(Ask::Extension(extendee, number)) => {
                let found = self.extensions.get(extendee.trim_start_matches('.')).and_then(|all| all.iter().find(|(n, _)| *n == number));
                match found {
                    Some((_, file)) => self.file_with_dependencies(file),
                    None => Err((Code::NotFound, format!("extension {number} of '{extendee}' not found"))),
                }
            }
            Some(Ask::ExtensionNumbers(message)) => {
                let name = message.trim_start_matches('.');
                if !self.symbols.contains_key(name) {
                    return Err((Code::NotFound, format!("type '{message}' not found")));
                }
                let numbers = self.extensions.get(name).map(|all| all.iter().map(|(n, _)| *n).collect()).unwrap_or_default();
                Ok(Answer::ExtensionNumbers(name.to_string(), numbers))
            }
        }
    }

    /// The named file first, then its dependencies (depth first, each once) that the index holds.
    fn file_with_dependencies(&self, name: &str) -> Result<Answer, (Code, String)> {
        if !self.files.contains_key(name) {
            return Err((Code::NotFound, format!("file '{name}' not found")));
        }
        let (mut out, mut seen, mut pending) = (Vec::new(), HashSet::new(), vec![name]);
        while let Some(next) = pending.pop() {
            let Some(file) = self.files.get(next) else { continue };
            if !seen.insert(next) {
                continue;
            }
            out.push(file.encoded.clone());
            pending.extend(file.dependencies.iter().rev().map(String::as_str));
        }
        Ok(Answer::Files(out))
    }
}

fn message(scope: &str, m: &DescriptorProto, symbols: &mut Vec<String>, extensions: &mut Vec<(String, i32)>) {
    let name = qualify(scope, m.name());
    symbols.extend(m.field.iter().map(|f| qualify(&name, f.name())));
    symbols.extend(m.oneof_decl.iter().map(|o| qualify(&name, o.name())));
    for nested in &m.nested_type {
        message(&name, nested, symbols, extensions);
    }
    for e in &m.enum_type {
        enumeration(&name, e, symbols);
    }
    for x in &m.extension {
        extension(&name, x, symbols, extensions);
    }
    symbols.push(name);
}

/// An enum and its values; as in protobuf's scoping, a value is a sibling of its enum, not a child.
fn enumeration(scope: &str, e: &EnumDescriptorProto, symbols: &mut Vec<String>) {
    symbols.extend(e.value.iter().map(|v| qualify(scope, v.name())));
    symbols.push(qualify(scope, e.name()));
}

fn extension(scope: &str, x: &FieldDescriptorProto, symbols: &mut Vec<String>, extensions: &mut Vec<(String, i32)>) {
    symbols.push(qualify(scope, x.name()));
    extensions.push((x.extendee().trim_start_matches('.').to_string(), x.number()));
}

/// The reflection service, served as both protocol versions from one index.
#[derive(Clone)]
pub(crate) struct Reflection {
    index: Arc<Index>,
}

impl Reflection {
    /// An index of these encoded `FileDescriptorSet`s (the first file registered under a name wins).
    pub(crate) fn new(sets: &[&[u8]]) -> Result<Reflection, prost::DecodeError> {
        Ok(Reflection { index: Arc::new(Index::new(sets)?) })
    }
}

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The service for one protocol version: the two differ only in their package name.
macro_rules! reflection_version {
    ($version:ident) => {
        pub(crate) mod $version {
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::server_reflection_server::{ServerReflection, ServerReflectionServer};
            use tonic_reflection::pb::$version::{
                ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse, ServerReflectionRequest,
                ServerReflectionResponse, ServiceResponse,
            };

            use super::*;

            fn respond(index: &Index, request: ServerReflectionRequest) -> ServerReflectionResponse {
                let ask = request.message_request.clone().map(|m| match m {
                    MessageRequest::FileByFilename(name) => Ask::File(name),
                    MessageRequest::FileContainingSymbol(symbol) => Ask::Symbol(symbol),
                    MessageRequest::FileContainingExtension(x) => Ask::Extension(x.containing_type, x.extension_number),
                    MessageRequest::AllExtensionNumbersOfType(message) => Ask::ExtensionNumbers(message),
                    MessageRequest::ListServices(_) => Ask::Services,
                });
                let response = match index.answer(ask) {
                    Ok(Answer::Files(file_descriptor_proto)) => {
                        MessageResponse::FileDescriptorResponse(FileDescriptorResponse { file_descriptor_proto })
                    }
                    Ok(Answer::ExtensionNumbers(base_type_name, extension_number)) => {
                        MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse { base_type_name, extension_number })
                    }
                    Ok(Answer::Services(names)) => MessageResponse::ListServicesResponse(ListServiceResponse {
                        service: names.into_iter().map(|name| ServiceResponse { name }).collect(),
                    }),
                    Err((code, error_message)) => MessageResponse::ErrorResponse(ErrorResponse { error_code: code as i32, error_message }),
                };
                ServerReflectionResponse {
                    valid_host: request.host.clone(),
                    original_request: Some(request),
                    message_response: Some(response),
                }
            }

            #[tonic::async_trait]
            impl ServerReflection for Reflection {
                type ServerReflectionInfoStream = Answers<ServerReflectionResponse>;

                async fn server_reflection_info(
                    &self,
                    request: Request<Streaming<ServerReflectionRequest>>,
                ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                    let index = Arc::clone(&self.index);
                    // One answer per request, in order; only a broken request stream ends it early.
                    let answers = request.into_inner().map(move |asked| asked.map(|r| respond(&index, r)));
                    Ok(Response::new(Box::pin(answers)))
                }
            }

            impl Reflection {
                pub(crate) fn $version(&self) -> ServerReflectionServer<Reflection> {
                    ServerReflectionServer::new(self.clone())
                }
            }
        }
    };
}

reflection_version!(v1);
reflection_version!(v1alpha);

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::new(&[crate::pb::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET]).expect("descriptor sets decode")
    }

    fn file_names(answer: Result<Answer, (Code, String)>) -> Vec<String> {
        let Ok(Answer::Files(files)) = answer else { panic!("not a file answer: {answer:?}") };
        files.iter().map(|f| FileDescriptorProto::decode(f.as_slice()).expect("a file descriptor").name().to_string()).collect()
    }

    #[test]
    fn symbols_of_every_kind_resolve_to_their_file() {
        let index = index();
        for symbol in [
            "product.ProductService",
            "product.ProductService.GetProduct",
            ".product.ProductService",
            "basket.BasketService",
            "payment.PaymentService",
            "grpc.health.v1.Health",
            "grpc.health.v1.HealthCheckRequest",
            "grpc.health.v1.HealthCheckRequest.service",
            "grpc.health.v1.HealthCheckResponse.ServingStatus",
            // An enum value is scoped beside its enum, as protobuf names it.
            "grpc.health.v1.HealthCheckResponse.SERVING",
        ] {
            assert_eq!(file_names(index.answer(Some(Ask::Symbol(symbol.into())))).len(), 1, "{symbol}");
        }
        assert_eq!(file_names(index.answer(Some(Ask::Symbol("grpc.health.v1.Health".into())))), vec!["health.proto"]);
        assert_eq!(file_names(index.answer(Some(Ask::File("health.proto".into())))), vec!["health.proto"]);
    }

    #[test]
    fn misses_are_errors_with_a_code() {
        let index = index();
        for ask in [
            Ask::Symbol("product.NoSuchThing".into()),
            Ask::Symbol("grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING".into()),
            Ask::File("nothing.proto".into()),
            Ask::Extension("grpc.health.v1.HealthCheckRequest".into(), 100),
            Ask::ExtensionNumbers("no.Such".into()),
        ] {
            let answer = index.answer(Some(ask));
            assert!(matches!(answer, Err((Code::NotFound, _))), "{answer:?}");
        }
        assert!(matches!(index.answer(None), Err((Code::InvalidArgument, _))));
        assert_eq!(
            index.answer(Some(Ask::ExtensionNumbers("grpc.health.v1.HealthCheckRequest".into()))),
            Ok(Answer::ExtensionNumbers("grpc.health.v1.HealthCheckRequest".into(), vec![]))
        );
    }

    #[test]
    fn services_are_listed_once_each_in_order() {
        let Ok(Answer::Services(names)) = index().answer(Some(Ask::Services)) else { panic!("no service list") };
        assert_eq!(names, ["basket.BasketService", "grpc.health.v1.Health", "payment.PaymentService", "product.ProductService"]);
    }

    #[test]
    fn a_file_comes_with_its_dependencies_once_each() {
        let dependent = FileDescriptorProto {
            name: Some("b.proto".into()),
            package: Some("b".into()),
            dependency: vec!["a.proto".into(), "health.proto".into(), "missing.proto".into()],
            ..Default::default()
        };
        let base = FileDescriptorProto { name: Some("a.proto".into()), dependency: vec!["health.proto".into()], ..Default::default() };
        let set = prost_types::FileDescriptorSet { file: vec![dependent, base] }.encode_to_vec();
        let index = Index::new(&[&set, tonic_health::pb::FILE_DESCRIPTOR_SET]).expect("decodes");
        assert_eq!(file_names(index.answer(Some(Ask::File("b.proto".into())))), vec!["b.proto", "a.proto", "health.proto"]);
    }
}
