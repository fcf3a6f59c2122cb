// expect: brpc_stream: brpc::BaiduMasterService / SerializedRequest / SerializedResponse are not provided
// As brpc's baidu_proxy_and_generic_call proxy: a generic service, with only server.h included.
#include <brpc/server.h>
class Proxy : public brpc::BaiduMasterService {
public:
    void ProcessRpcRequest(brpc::Controller*, const brpc::SerializedRequest*, brpc::SerializedResponse*,
                           google::protobuf::Closure* done) {
        done->Run();
    }
};
int main() {
    Proxy proxy;
    brpc::ServerOptions options;
    options.baidu_master_service = &proxy;
    return 0;
}
