//! [`program_client!`]: what the typed client of every RPC program has, so that NFS, MOUNT and
//! PORTMAP differ only in their procedures.

/// Defines `pub struct $name` over a shared [`RpcConnection`](crate::RpcConnection) with `new`,
/// `connect` (default options), `conn`, `null` (procedure 0, which every program has) and a
/// private `call` that sends one procedure of `$program` version `$version`.
macro_rules! program_client {
    ($(#[$doc:meta])* $name:ident: $program:expr, $version:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            conn: $crate::conn::RpcConnection,
        }

        impl $name {
            pub fn new(conn: $crate::conn::RpcConnection) -> Self {
                Self { conn }
            }

            /// Connect over TCP with default options (AUTH_SYS as root, 30 s timeout).
            pub async fn connect(addr: impl ::tokio::net::ToSocketAddrs) -> $crate::Result<Self> {
                Ok(Self::new($crate::conn::RpcConnection::connect(addr).await?))
            }

            /// The underlying connection, for raw calls (or to share with another program's
            /// client: one port may serve several).
            pub fn conn(&self) -> &$crate::conn::RpcConnection {
                &self.conn
            }

            /// Procedure 0: no arguments, no result; it only shows the program answers.
            pub async fn null(&self) -> $crate::Result<()> {
                self.call(0, &()).await
            }

            async fn call<
                A: ::mountshare_proto::XdrEncode,
                R: ::mountshare_proto::XdrDecode,
            >(
                &self,
                procedure: u32,
                args: &A,
            ) -> $crate::Result<R> {
                self.conn
                    .call_typed($program, $version, procedure, args)
                    .await
            }
        }
    };
}

pub(crate) use program_client;
