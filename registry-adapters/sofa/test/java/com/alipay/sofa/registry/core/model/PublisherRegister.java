// SOFA Registry's PublisherRegister: field names and Java types of the public model class, for meshport's interop test.
package com.alipay.sofa.registry.core.model;

import java.util.List;

public class PublisherRegister extends BaseRegister {
  private static final long serialVersionUID = 1L;
  List<DataBox> dataList;
}
