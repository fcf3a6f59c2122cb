# The consumer program, compiled once and linked twice: against the static
# library and against the shared one.
add_library(consumer_object OBJECT "${CMAKE_CURRENT_LIST_DIR}/consumer.cpp")
target_link_libraries(consumer_object PRIVATE brpc_stream::brpc_stream)
add_executable(consumer_static $<TARGET_OBJECTS:consumer_object>)
target_link_libraries(consumer_static PRIVATE brpc_stream::brpc_stream)
add_executable(consumer_shared $<TARGET_OBJECTS:consumer_object>)
target_link_libraries(consumer_shared PRIVATE brpc_stream::shared)
